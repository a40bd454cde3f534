package lifecycletest

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Runtime is a fake sandbox.Runtime. A sandbox's main command is scripted
// by its argv: ["exit", "N"] exits N at once, ["echo", ...] logs its args
// and exits 0, anything else runs until Stop or Exit; an empty command idles.
type Runtime struct {
	// CreateErr, when set, is called by Create; a non-nil result fails it.
	CreateErr func(spec sandbox.Spec) error
	// StartErr, when set, is called by Start; a non-nil result fails it.
	StartErr func(id string, start sandbox.StartSpec) error
	// CreateGate, when set, is received from before Create returns, so a
	// test can hold sandboxes in CREATING.
	CreateGate chan struct{}
	// DeleteHook, when set, is called by Delete before it removes the
	// sandbox; a non-nil result fails the Delete and leaves the sandbox.
	// A test can block in it to hold teardowns, or count them.
	DeleteHook func(ctx context.Context, id string) error

	mu  sync.Mutex
	sbs map[string]*fakeSandbox
}

type fakeSandbox struct {
	mu    sync.Mutex
	info  sandbox.Info
	start sandbox.StartSpec
	done  chan struct{} // closed when the main command ended
	exit  sandbox.ExitStatus
	gone  bool // deleted behind the server's back (Lose)
	log   []sandbox.Output
	files map[string]*fakeFile
	procs map[string]*proc
	next  int
}

var _ sandbox.Runtime = (*Runtime)(nil)

// NewRuntime returns an empty fake runtime.
func NewRuntime() *Runtime { return &Runtime{sbs: map[string]*fakeSandbox{}} }

func (r *Runtime) get(id string) (*fakeSandbox, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sb, ok := r.sbs[id]
	if !ok {
		return nil, sandbox.NotFound(sandbox.ReasonSandboxNotFound, "runtime: sandbox %q not found", id)
	}
	return sb, nil
}

// Create implements sandbox.Runtime.
func (r *Runtime) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Info, error) {
	if r.CreateGate != nil {
		select {
		case <-r.CreateGate:
		case <-ctx.Done():
			return sandbox.Info{}, ctx.Err()
		}
	}
	if r.CreateErr != nil {
		if err := r.CreateErr(spec); err != nil {
			return sandbox.Info{}, err
		}
	}
	sb := &fakeSandbox{
		info: sandbox.Info{ID: spec.ID, Image: spec.Image, Resources: spec.Resources,
			Status: sandbox.RuntimeRunning, PID: 4242, CreatedAt: time.Now()},
		done:  make(chan struct{}),
		files: map[string]*fakeFile{"/": {dir: true, mode: 0o755}},
		procs: map[string]*proc{},
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.sbs[spec.ID]; ok {
		return sandbox.Info{}, sandbox.Errorf(sandbox.ErrAlreadyExists, sandbox.ReasonSandboxExists, "runtime: sandbox %q exists", spec.ID)
	}
	r.sbs[spec.ID] = sb
	return sb.info, nil
}

// Start implements sandbox.Runtime.
func (r *Runtime) Start(ctx context.Context, id string, start sandbox.StartSpec) error {
	sb, err := r.get(id)
	if err != nil {
		return err
	}
	if r.StartErr != nil {
		if err := r.StartErr(id, start); err != nil {
			return err
		}
	}
	sb.mu.Lock()
	sb.start = start
	for _, f := range start.Files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o444
		}
		sb.files[f.Path] = &fakeFile{data: append([]byte(nil), f.Content...), mode: mode}
	}
	sb.mu.Unlock()
	if len(start.Command) == 0 {
		return nil
	}
	switch start.Command[0] {
	case "exit":
		code := 0
		if len(start.Command) > 1 {
			code, _ = strconv.Atoi(start.Command[1])
		}
		sb.end(sandbox.ExitStatus{Code: code})
	case "echo":
		line := ""
		for i, a := range start.Command[1:] {
			if i > 0 {
				line += " "
			}
			line += a
		}
		sb.mu.Lock()
		sb.log = append(sb.log, sandbox.Output{Stream: sandbox.Stdout, Data: []byte(line + "\n")})
		sb.mu.Unlock()
		sb.end(sandbox.ExitStatus{Code: 0})
	}
	return nil
}

// end records the main command's exit once.
func (sb *fakeSandbox) end(st sandbox.ExitStatus) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	select {
	case <-sb.done:
		return
	default:
	}
	st.At = time.Now()
	sb.exit = st
	sb.info.Exit = &sb.exit
	close(sb.done)
}

// Agent implements sandbox.Runtime.
func (r *Runtime) Agent(ctx context.Context, id string) (sandbox.Agent, error) {
	sb, err := r.get(id)
	if err != nil {
		return nil, err
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.info.Status != sandbox.RuntimeRunning {
		return nil, sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "runtime: sandbox %q is stopped", id)
	}
	return &Agent{sb: sb}, nil
}

// Wait implements sandbox.Runtime.
func (r *Runtime) Wait(ctx context.Context, id string) (sandbox.ExitStatus, error) {
	sb, err := r.get(id)
	if err != nil {
		return sandbox.ExitStatus{}, err
	}
	select {
	case <-sb.done:
	case <-ctx.Done():
		return sandbox.ExitStatus{}, ctx.Err()
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.gone {
		return sandbox.ExitStatus{}, sandbox.NotFound(sandbox.ReasonSandboxNotFound, "runtime: sandbox %q is gone", id)
	}
	return sb.exit, nil
}

// Stop implements sandbox.Runtime.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	sb, err := r.get(id)
	if err != nil {
		return err
	}
	sb.end(sandbox.ExitStatus{Code: 143, Signal: "SIGTERM"})
	sb.mu.Lock()
	sb.info.Status = sandbox.RuntimeStopped
	sb.mu.Unlock()
	return nil
}

// Delete implements sandbox.Runtime.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	sb, err := r.get(id)
	if err != nil {
		return err
	}
	if r.DeleteHook != nil {
		if err := r.DeleteHook(ctx, id); err != nil {
			return err
		}
	}
	sb.end(sandbox.ExitStatus{Code: 137, Signal: "SIGKILL"})
	r.mu.Lock()
	delete(r.sbs, id)
	r.mu.Unlock()
	return nil
}

// List implements sandbox.Runtime.
func (r *Runtime) List(ctx context.Context) ([]sandbox.Info, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []sandbox.Info
	for _, sb := range r.sbs {
		sb.mu.Lock()
		out = append(out, sb.info)
		sb.mu.Unlock()
	}
	return out, nil
}

// Exit ends a sandbox's main command with code, as if it exited.
func (r *Runtime) Exit(id string, code int) error {
	sb, err := r.get(id)
	if err != nil {
		return err
	}
	sb.end(sandbox.ExitStatus{Code: code})
	return nil
}

// End ends a sandbox's main command (or idle sandbox) with st, as its
// agent would, e.g. with TimedOut at its deadline.
func (r *Runtime) End(id string, st sandbox.ExitStatus) error {
	sb, err := r.get(id)
	if err != nil {
		return err
	}
	sb.end(st)
	return nil
}

// Lose removes a sandbox behind the server's back, as a host reboot would.
func (r *Runtime) Lose(id string) {
	sb, err := r.get(id)
	if err != nil {
		return
	}
	sb.mu.Lock()
	sb.gone = true
	sb.mu.Unlock()
	sb.end(sandbox.ExitStatus{Code: 137, Signal: "SIGKILL"})
	r.mu.Lock()
	delete(r.sbs, id)
	r.mu.Unlock()
}

// Adopt adds a running sandbox as if an earlier server process made it.
func (r *Runtime) Adopt(id string) {
	sb := &fakeSandbox{
		info:  sandbox.Info{ID: id, Status: sandbox.RuntimeRunning, CreatedAt: time.Now()},
		done:  make(chan struct{}),
		files: map[string]*fakeFile{"/": {dir: true, mode: 0o755}},
		procs: map[string]*proc{},
	}
	r.mu.Lock()
	r.sbs[id] = sb
	r.mu.Unlock()
}

// Has reports whether the runtime still has the sandbox.
func (r *Runtime) Has(id string) bool {
	_, err := r.get(id)
	return err == nil
}

// Len is the number of sandboxes the runtime has.
func (r *Runtime) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sbs)
}

// StartSpec returns what Start applied to a sandbox.
func (r *Runtime) StartSpec(id string) sandbox.StartSpec {
	sb, err := r.get(id)
	if err != nil {
		return sandbox.StartSpec{}
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.start
}
