package sbx

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Sandbox is a handle on one sandbox. Run returns it once the server
// accepted the create; a Session's Sandbox creates it on first use. Calls
// that need a running sandbox (Exec, file calls) wait until it runs. A
// Sandbox is safe for concurrent use.
type Sandbox struct {
	c *Client

	// createMu serializes the lazy create of a session's sandbox.
	createMu  sync.Mutex
	pending   *sbxv1.CreateSandboxRequest // non-nil until created (sessions only)
	createErr error                       // a bad option of a lazy sandbox, reported on use
	sess      *Session

	mu      sync.Mutex
	id      string
	info    Info
	running bool // seen RUNNING once; later calls skip the wait
}

// ID returns the sandbox id, or "" for a session's sandbox that has not been
// created yet (see Start).
func (s *Sandbox) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}

// Info returns what the last call learned about the sandbox, without asking
// the server; Refresh asks.
func (s *Sandbox) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info
}

func (s *Sandbox) setInfo(w *sbxv1.Sandbox) Info {
	info := infoFromWire(w)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.id, s.info = info.ID, info
	if info.State == StateRunning {
		s.running = true
	}
	return info
}

// Run asks the server for a sandbox and returns once the create is accepted
// (the sandbox is then PENDING or CREATING); use Wait to wait until it runs.
func (c *Client) Run(ctx context.Context, opts ...RunOption) (*Sandbox, error) {
	req, err := createRequest(opts)
	if err != nil {
		return nil, err
	}
	sb := &Sandbox{c: c}
	if err := sb.create(ctx, req); err != nil {
		return nil, err
	}
	return sb, nil
}

func createRequest(opts []RunOption) (*sbxv1.CreateSandboxRequest, error) {
	var cfg runConfig
	for _, o := range opts {
		o.applyRun(&cfg)
	}
	req := &sbxv1.CreateSandboxRequest{
		Image:      cfg.image,
		Command:    cfg.command,
		Env:        cfg.env,
		WorkingDir: cfg.workingDir,
		User:       cfg.user,
		Tags:       cfg.tags,
		Resources:  resourcesToWire(cfg.resources),
		RequestId:  cfg.requestID,
		Network:    networkToWire(cfg.network),
		Secrets:    secretsToWire(cfg.secrets),
	}
	if len(cfg.ports) > 0 {
		ports, err := portsToWire(cfg.ports)
		if err != nil {
			return nil, err
		}
		req.Ports = ports
	}
	if cfg.lifetime != 0 {
		if cfg.lifetime < 0 {
			return nil, errorf(ErrInvalidArgument, "LIFETIME_OUT_OF_RANGE", "lifetime %s is negative: give a positive duration", cfg.lifetime)
		}
		secs := int64((cfg.lifetime + time.Second - 1) / time.Second)
		req.MaxLifetimeSeconds = &secs
	}
	for _, f := range cfg.files {
		req.MountedFiles = append(req.MountedFiles, &sbxv1.MountedFile{Path: f.path, Content: f.content, Mode: sandbox.UnixMode(f.mode)})
	}
	return req, nil
}

func (s *Sandbox) create(ctx context.Context, req *sbxv1.CreateSandboxRequest) error {
	for attempt := 1; ; attempt++ {
		resp, err := s.c.sandboxes.Create(ctx, connect.NewRequest(req))
		if err == nil {
			s.setInfo(resp.Msg.GetSandbox())
			return nil
		}
		err = s.c.fromWire(err)
		if ReasonOf(err) != ReasonCreateQueueFull || attempt > s.c.createRetries {
			return err
		}
		// Refused before anything was stored, so trying again is safe
		// with or without a request id. A little jitter spreads callers
		// that were refused together.
		d := max(RetryAfterOf(err), 50*time.Millisecond)
		d += time.Duration(rand.Int64N(int64(d/5) + 1))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// Start creates a session's sandbox now instead of on first use. For a
// sandbox from Run or Get it does nothing.
func (s *Sandbox) Start(ctx context.Context) error {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	if s.createErr != nil {
		return s.createErr
	}
	if s.pending == nil {
		if s.ID() == "" {
			return errorf(ErrFailedPrecondition, "SANDBOX_NOT_RUNNING", "this sandbox was stopped before it was created: ask its session for a new one")
		}
		return nil
	}
	if err := s.sess.usable(); err != nil {
		return err
	}
	if err := s.create(ctx, s.pending); err != nil {
		return err
	}
	s.pending = nil
	return nil
}

// Wait waits until the sandbox runs. A sandbox that ends before it runs (a
// bad image, a failed start) or has already ended returns an
// ErrFailedPrecondition error naming its state and reason.
func (s *Sandbox) Wait(ctx context.Context) error {
	info, err := s.waitStarted(ctx)
	if err != nil {
		return err
	}
	if info.State != StateRunning {
		return notRunning(info)
	}
	return nil
}

// waitStarted waits until the sandbox runs or has ended, whichever comes
// first, and returns its Info.
func (s *Sandbox) waitStarted(ctx context.Context) (Info, error) {
	if err := s.Start(ctx); err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	info, running := s.info, s.running && !s.info.State.Terminal()
	s.mu.Unlock()
	if running {
		return info, nil
	}
	return s.wait(ctx, sbxv1.WaitCondition_WAIT_CONDITION_RUNNING)
}

func notRunning(info Info) error {
	if info.StartedAt.IsZero() {
		return errorf(ErrFailedPrecondition, "SANDBOX_NOT_RUNNING",
			"sandbox %s did not start: %s (%s)", info.ID, info.State, info.Reason)
	}
	return errorf(ErrFailedPrecondition, "SANDBOX_NOT_RUNNING",
		"sandbox %s has ended %s (%s): start a new one", info.ID, info.State, info.Reason)
}

// waitRound bounds one server-side wait, so that a lost connection is
// noticed; the loop in wait repeats until the condition or ctx ends.
const waitRound = 60 * time.Second

func (s *Sandbox) wait(ctx context.Context, until sbxv1.WaitCondition) (Info, error) {
	for {
		round := waitRound
		if dl, ok := ctx.Deadline(); ok {
			if left := time.Until(dl); left < round {
				round = left
			}
		}
		secs := int32(round / time.Second)
		if secs < 1 {
			secs = 1
		}
		resp, err := s.c.sandboxes.Wait(ctx, connect.NewRequest(&sbxv1.WaitSandboxRequest{
			Id: s.ID(), Until: until, TimeoutSeconds: secs,
		}))
		if err != nil {
			return Info{}, s.c.fromWire(err)
		}
		info := s.setInfo(resp.Msg.GetSandbox())
		if !resp.Msg.GetTimedOut() {
			return info, nil
		}
		if err := ctx.Err(); err != nil {
			return info, s.c.fromWire(err)
		}
	}
}

// WaitUntilComplete waits until the sandbox has ended (COMPLETED, FAILED or
// TERMINATED) and returns its final Info.
func (s *Sandbox) WaitUntilComplete(ctx context.Context) (Info, error) {
	if err := s.Start(ctx); err != nil {
		return Info{}, err
	}
	return s.wait(ctx, sbxv1.WaitCondition_WAIT_CONDITION_TERMINAL)
}

// ExitCode waits until the sandbox has ended and returns its main command's
// exit code. A sandbox whose main command never exited (an idle sandbox,
// or one stopped or failed before) returns an ErrFailedPrecondition error.
func (s *Sandbox) ExitCode(ctx context.Context) (int, error) {
	info, err := s.WaitUntilComplete(ctx)
	if err != nil {
		return 0, err
	}
	if !info.Exited {
		return 0, errorf(ErrFailedPrecondition, "NO_EXIT_CODE",
			"sandbox %s ended %s (%s) without its main command exiting, so it has no exit code", info.ID, info.State, info.Reason)
	}
	return info.ExitCode, nil
}

// Refresh asks the server for the sandbox's current Info.
func (s *Sandbox) Refresh(ctx context.Context) (Info, error) {
	if err := s.Start(ctx); err != nil {
		return Info{}, err
	}
	resp, err := s.c.sandboxes.Get(ctx, connect.NewRequest(&sbxv1.GetSandboxRequest{Id: s.ID()}))
	if err != nil {
		return Info{}, s.c.fromWire(err)
	}
	return s.setInfo(resp.Msg.GetSandbox()), nil
}

// StopOption configures Stop.
type StopOption func(*stopConfig)

type stopConfig struct{ grace *time.Duration }

// Grace sets the time between SIGTERM and SIGKILL (whole seconds; the server
// default is 10 s, its maximum 300 s).
func Grace(d time.Duration) StopOption { return func(c *stopConfig) { c.grace = &d } }

// Stop stops the sandbox: SIGTERM to its processes, SIGKILL after the grace
// period; it ends TERMINATED. Stopping a sandbox that has ended does
// nothing; stopping a session's sandbox that was never created only makes
// it unusable.
func (s *Sandbox) Stop(ctx context.Context, opts ...StopOption) error {
	s.createMu.Lock()
	if s.pending != nil {
		s.pending = nil
		s.createMu.Unlock()
		return nil
	}
	s.createMu.Unlock()
	var cfg stopConfig
	for _, o := range opts {
		o(&cfg)
	}
	req := &sbxv1.StopSandboxRequest{Id: s.ID()}
	if cfg.grace != nil {
		secs := int32(min((*cfg.grace+time.Second-1)/time.Second, 1<<30))
		req.GracePeriodSeconds = &secs
	}
	resp, err := s.c.sandboxes.Stop(ctx, connect.NewRequest(req))
	if err != nil {
		return s.c.fromWire(err)
	}
	s.setInfo(resp.Msg.GetSandbox())
	return nil
}

// Delete stops the sandbox if needed and removes it and its record.
func (s *Sandbox) Delete(ctx context.Context) error {
	s.createMu.Lock()
	if s.pending != nil {
		s.pending = nil
		s.createMu.Unlock()
		return nil
	}
	s.createMu.Unlock()
	return s.c.Delete(ctx, s.ID())
}

// FromID returns a handle on an existing sandbox without asking the server;
// its Info is empty until a call fills it (see Refresh).
func (c *Client) FromID(id string) *Sandbox {
	return &Sandbox{c: c, id: id, info: Info{ID: id}}
}

// Get returns a handle on an existing sandbox with its current Info.
func (c *Client) Get(ctx context.Context, id string) (*Sandbox, error) {
	if id == "" {
		return nil, errorf(ErrInvalidArgument, "INVALID_ARGUMENT", "no sandbox id given")
	}
	sb := c.FromID(id)
	if _, err := sb.Refresh(ctx); err != nil {
		return nil, err
	}
	return sb, nil
}

// Delete stops a sandbox if needed and removes it and its record.
func (c *Client) Delete(ctx context.Context, id string) error {
	_, err := c.sandboxes.Delete(ctx, connect.NewRequest(&sbxv1.DeleteSandboxRequest{Id: id}))
	return c.fromWire(err)
}

// Stop stops a sandbox by id; see Sandbox.Stop.
func (c *Client) Stop(ctx context.Context, id string, opts ...StopOption) error {
	return c.FromID(id).Stop(ctx, opts...)
}

// ListOptions filter List. The zero value lists every sandbox that has not
// ended.
type ListOptions struct {
	// Tags: only sandboxes carrying every one of these.
	Tags []string
	// States: only these states. Listing a terminal state implies All.
	States []State
	// SessionID: only this session's sandboxes.
	SessionID string
	// All includes ended sandboxes (kept for the server's retention period).
	All bool
	// Limit stops after this many; 0 means no limit.
	Limit int
}

// maxListPages bounds List against a server that never stops paging.
const maxListPages = 10000

// List returns the sandboxes that match opts, newest first.
func (c *Client) List(ctx context.Context, opts ListOptions) ([]*Sandbox, error) {
	req := &sbxv1.ListSandboxesRequest{Tags: opts.Tags, SessionId: opts.SessionID, IncludeTerminal: opts.All, PageSize: 1000}
	for _, st := range opts.States {
		w, ok := stateToWire(st)
		if !ok {
			return nil, errorf(ErrInvalidArgument, "INVALID_ARGUMENT", "unknown state %q: use one of %v", st, States)
		}
		req.States = append(req.States, w)
		if st.Terminal() {
			req.IncludeTerminal = true
		}
	}
	var out []*Sandbox
	for page := 0; page < maxListPages; page++ {
		resp, err := c.sandboxes.List(ctx, connect.NewRequest(req))
		if err != nil {
			return nil, c.fromWire(err)
		}
		for _, w := range resp.Msg.GetSandboxes() {
			sb := &Sandbox{c: c}
			sb.setInfo(w)
			out = append(out, sb)
			if opts.Limit > 0 && len(out) >= opts.Limit {
				return out, nil
			}
		}
		next := resp.Msg.GetNextPageToken()
		if next == "" || next == req.PageToken {
			return out, nil
		}
		req.PageToken = next
	}
	return out, nil
}

// String returns the sandbox id, for logs.
func (s *Sandbox) String() string { return fmt.Sprintf("sandbox %s", s.ID()) }
