package local

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/sandbox"
	"golang.org/x/sys/unix"
)

// Start applies start through the agent and starts the main command.
func (r *Runtime) Start(ctx context.Context, id string, start sandbox.StartSpec) error {
	b, err := r.running(id)
	if err != nil {
		return err
	}
	rec, _ := b.snapshot()
	return b.agentClient(rec).Init(ctx, agent.InitSpec{Image: rec.Config, Start: start})
}

// Agent returns a client of the sandbox's agent.
func (r *Runtime) Agent(ctx context.Context, id string) (sandbox.Agent, error) {
	b, err := r.running(id)
	if err != nil {
		return nil, err
	}
	rec, _ := b.snapshot()
	if rec.Runtime == "runsc" {
		return withDiskLimit(runscAgent{sharedClient{b.agentClient(rec)}, b.state}, rec.Resources.DiskBytes, r.cfg.Disk), nil
	}
	return withDiskLimit(sharedClient{b.agentClient(rec)}, rec.Resources.DiskBytes, r.cfg.Disk), nil
}

// dialAgent returns a client of the agent whose state dir is state. The
// state dir is writable by sandbox root, so the client trusts only a socket whose
// listener is the host process recorded at Create (record.listener): a
// symlink there is not followed, and a socket that a host process or another
// sandbox listens on is refused.
//
// Under crun and runc that process is the container's PID 1, the agent, so
// a socket that another process of the same sandbox bound in the agent's
// place is refused too. Under runsc (gVisor) no sandbox process is a host
// process: the sandbox's gofer binds and listens on the host socket for
// whatever process binds it inside, so SO_PEERCRED names the gofer for
// every socket the sandbox makes. The check is then that the socket was
// bound inside this very sandbox (the gofer pid comes from runsc's own
// state under our --root, which the sandbox cannot reach), not that the
// agent bound it: sandbox root can put a listener of its own there and
// answer for its own sandbox, which it could do anyway by controlling the
// agent's processes, but nothing outside the sandbox can.
func dialAgent(state string, rec record) *agent.Client {
	pid, start := rec.listener()
	return agent.DialState(state, func(peer int) error {
		if peer != pid || !alive(pid, start) {
			return fmt.Errorf("the socket's listener is pid %d, not the sandbox's agent (pid %d)", peer, pid)
		}
		return nil
	})
}

// running returns the sandbox if its container runs, else NotFound or
// FailedPrecondition.
func (r *Runtime) running(id string) (*box, error) {
	b, err := r.lookup(id)
	if err != nil {
		return nil, err
	}
	rec, _ := b.snapshot()
	if rec.Phase != phaseCreated || !alive(rec.PID, rec.PIDStart) {
		return nil, sandbox.FailedPrecondition(sandbox.ReasonSandboxNotRunning, "sandbox %q is not running", id)
	}
	// Only a hint for a clear error: the socket's name is sandbox-writable,
	// so the client's dial (dialAgent) is what checks the socket itself.
	if st, err := os.Lstat(socketIn(b.state)); err != nil || st.Mode().Type() != os.ModeSocket {
		return nil, sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "the agent socket of sandbox %q is missing or not a socket", id)
	}
	return b, nil
}

// Wait blocks until the main command has exited (or, for an idle sandbox,
// the container has), and returns how it ended. It asks the agent while the
// agent lives, and reads the exit file the agent left once it is gone.
func (r *Runtime) Wait(ctx context.Context, id string) (sandbox.ExitStatus, error) {
	b, err := r.lookup(id)
	if err != nil {
		return sandbox.ExitStatus{}, err
	}
	rec, _ := b.snapshot()
	if st, ok := r.exited(b.state, rec); ok {
		return st, nil
	}
	st, err := b.agentClient(rec).WaitMain(ctx)
	if err == nil {
		return r.enrich(rec, st), nil
	}
	if ctx.Err() != nil {
		return sandbox.ExitStatus{}, sandbox.Errorf(sandbox.ErrDeadlineExceeded, sandbox.ReasonInternal, "wait for sandbox %q: %w", id, ctx.Err())
	}
	// No main command, or the agent is gone: poll the exit file and the
	// container until one says it ended.
	for i := 0; ; i++ {
		rec, deleted := b.snapshot()
		if deleted {
			return sandbox.ExitStatus{}, sandbox.NotFound(sandbox.ReasonSandboxNotFound, "sandbox %q was deleted while waiting", id)
		}
		if st, ok := r.exited(b.state, rec); ok {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return sandbox.ExitStatus{}, sandbox.Errorf(sandbox.ErrDeadlineExceeded, sandbox.ReasonInternal, "wait for sandbox %q: %w", id, ctx.Err())
		case <-time.After(min(time.Duration(i+1)*10*time.Millisecond, 250*time.Millisecond)):
		}
	}
}

// exited returns the main command's exit status from the agent's exit file,
// or, once the container is gone without one, how its PID 1 ended.
func (r *Runtime) exited(state string, rec record) (sandbox.ExitStatus, bool) {
	if st, err := agent.ReadExitFile(state); err == nil && st != nil {
		return r.enrich(rec, *st), true
	}
	if rec.Phase == phaseCreated && alive(rec.PID, rec.PIDStart) {
		return sandbox.ExitStatus{}, false
	}
	if rec.Phase == phaseCreating {
		return sandbox.ExitStatus{}, false
	}
	if st, ok := r.reaper.exitStatus(rec.PID); ok {
		return r.enrich(rec, st), true
	}
	if r.reaper.watching(rec.PID) && sameProcess(rec.PID, rec.PIDStart) {
		// A zombie we cannot reap yet: the thread group leader has exited
		// but other threads still are exiting (gVisor's Sentry freeing a
		// large address space after the OOM killer).
		return sandbox.ExitStatus{}, false
	}
	// Not our child (re-attached): we cannot know; it was killed.
	return sandbox.ExitStatus{Code: 137, Signal: "SIGKILL", At: time.Now().UTC()}, true
}

// enrich marks a status OOMKilled when the kernel's OOM killer acted in the
// sandbox's memory cgroup and the process died of SIGKILL.
func (r *Runtime) enrich(rec record, st sandbox.ExitStatus) sandbox.ExitStatus {
	if !st.OOMKilled && st.Signal == "SIGKILL" && !st.TimedOut && r.cg.oomKills(r.cfg.CgroupParent, rec.ID) > 0 {
		st.OOMKilled = true
	}
	return st
}

// Stop sends SIGTERM to the agent (which forwards it to the main command's
// process group and ends the sandbox), waits up to grace for the container
// to exit, then kills it with SIGKILL, which ends its whole PID namespace.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	b, err := r.lookup(id)
	if err != nil {
		return err
	}
	b.op.Lock()
	defer b.op.Unlock()
	return r.stop(ctx, b, grace)
}

func (r *Runtime) stop(ctx context.Context, b *box, grace time.Duration) error {
	rec, _ := b.snapshot()
	if !alive(rec.PID, rec.PIDStart) {
		return nil
	}
	if grace > 0 {
		b.closeIdle()
		if err := r.signal(ctx, rec, unix.SIGTERM); err != nil && !exiting(ctx, rec) {
			return sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonRuntimeError, "stop sandbox %q: %w", rec.ID, err)
		}
		// The grace period is the main command's: once it has ended (its
		// exit file exists) the rest of the sandbox need not linger. Our
		// idle connections to the agent are closed before and while we
		// wait: nothing of ours needs them once it was told to stop (the
		// agent closes them too as it shuts down).
		if waitGone(ctx, rec, grace, b.state, b.closeIdle) {
			return nil
		}
	}
	if err := r.signal(ctx, rec, unix.SIGKILL); err != nil {
		if exiting(ctx, rec) {
			return nil
		}
		return sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonRuntimeError, "kill sandbox %q: %w", rec.ID, err)
	}
	// A parked (frozen) sandbox dies of the SIGKILL once thawed (park.go).
	r.thaw(rec.ID)
	if !waitGone(ctx, rec, 30*time.Second, "", nil) {
		if ctx.Err() != nil {
			return sandbox.Errorf(sandbox.ErrDeadlineExceeded, sandbox.ReasonRuntimeError, "stop sandbox %q: %w", rec.ID, ctx.Err())
		}
		return sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonRuntimeError, "sandbox %q did not exit 30s after SIGKILL", rec.ID)
	}
	return nil
}

// exiting reports whether a sandbox that could not be signalled is on its
// way out anyway: runsc's kill fails ("connecting to control server ...
// connection refused") once the Sentry has begun to exit, which its PID 1
// then finishes within moments.
func exiting(ctx context.Context, rec record) bool {
	return waitGone(ctx, rec, 2*time.Second, "", nil)
}

// signal sends sig to the container's PID 1. Under crun and runc that is
// what `<runtime> kill` does too, so it is sent directly through a pidfd
// (no runtime process to spawn: about 10 ms less per stop); the pidfd is
// checked to be the recorded process, so a reused pid is never signalled.
// runsc's PID 1 lives in the Sentry, so it goes through runsc.
func (r *Runtime) signal(ctx context.Context, rec record, sig unix.Signal) error {
	if r.oci.name != "runsc" {
		fd, err := unix.PidfdOpen(rec.PID, 0)
		if err == nil {
			defer unix.Close(fd)
			if !sameProcess(rec.PID, rec.PIDStart) {
				return nil // gone, and the pid reused
			}
			err = unix.PidfdSendSignal(fd, sig, nil, 0)
			if err == nil || err == unix.ESRCH {
				return nil
			}
		}
		if err == unix.ESRCH {
			return nil
		}
		// No pidfd support: fall back to the runtime's own kill.
	}
	return r.oci.kill(ctx, rec.ID, unix.SignalName(sig))
}

// waitGone polls until the container's PID 1 is gone, for up to d. With a
// state dir, it also stops early (returning false) once the main command's
// exit file appears. each, when set, runs on every poll.
func waitGone(ctx context.Context, rec record, d time.Duration, state string, each func()) bool {
	if state == "" && each == nil {
		return waitExited(ctx, rec.PID, rec.PIDStart, d)
	}
	deadline := time.Now().Add(d)
	for i := 0; ; i++ {
		if !alive(rec.PID, rec.PIDStart) {
			return true
		}
		if state != "" {
			if st, err := agent.ReadExitFile(state); err == nil && st != nil {
				return false
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		if each != nil {
			each()
		}
		sleepBackoff(i)
	}
}

// Delete stops the sandbox if needed and removes everything it had.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	b, err := r.lookup(id)
	if err != nil {
		return err
	}
	b.op.Lock()
	defer b.op.Unlock()
	if _, deleted := b.snapshot(); deleted {
		return sandbox.NotFound(sandbox.ReasonSandboxNotFound, "sandbox %q does not exist on this host", id)
	}
	// Cleanup must finish even if the caller gives up half way.
	ctx = context.WithoutCancel(ctx)
	if err := r.stop(ctx, b, 0); err != nil {
		return err
	}
	rec, _ := b.snapshot()
	err = r.teardown(ctx, b)
	r.parked.release(id)
	r.forget(b)
	r.reaper.forget(rec.PID)
	if rec.ListenerPID != 0 {
		r.reaper.forget(rec.ListenerPID)
	}
	return err
}

// List returns every sandbox under this Runtime's root.
func (r *Runtime) List(ctx context.Context) ([]sandbox.Info, error) {
	r.mu.Lock()
	boxes := make([]*box, 0, len(r.boxes))
	for _, b := range r.boxes {
		boxes = append(boxes, b)
	}
	r.mu.Unlock()
	out := make([]sandbox.Info, 0, len(boxes))
	for _, b := range boxes {
		rec, deleted := b.snapshot()
		if !deleted {
			out = append(out, r.info(rec, b))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Info describes one sandbox (an extension of sandbox.Runtime for callers
// that need one sandbox without listing all).
func (r *Runtime) Info(ctx context.Context, id string) (sandbox.Info, error) {
	b, err := r.lookup(id)
	if err != nil {
		return sandbox.Info{}, err
	}
	rec, _ := b.snapshot()
	return r.info(rec, b), nil
}

func (r *Runtime) info(rec record, b *box) sandbox.Info {
	in := sandbox.Info{ID: rec.ID, Image: rec.Image, Resources: rec.Resources, PID: rec.PID, CreatedAt: rec.CreatedAt}
	switch {
	case rec.Phase == phaseCreating:
		in.Status = sandbox.RuntimeCreated
	case rec.Phase == phaseCreated && alive(rec.PID, rec.PIDStart):
		in.Status = sandbox.RuntimeRunning
	default:
		in.Status = sandbox.RuntimeStopped
		in.PID = 0
	}
	if st, err := agent.ReadExitFile(b.state); err == nil && st != nil {
		s := r.enrich(rec, *st)
		in.Exit = &s
	}
	return in
}
