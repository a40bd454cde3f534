package lifecycle

import (
	"context"
	"errors"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// MaxStopGrace bounds the grace period a caller may ask for.
const MaxStopGrace = 5 * time.Minute

// Stop stops a tenant's sandbox: TERMINATING, then SIGTERM, SIGKILL after
// grace (0 means the configured default), then TERMINATED with reason
// "stopped by user". Stopping a sandbox that already ended returns it
// unchanged.
func (m *Manager) Stop(ctx context.Context, tenantID, id string, grace time.Duration) (*sandbox.Sandbox, error) {
	if _, err := m.Get(ctx, tenantID, id); err != nil {
		return nil, err
	}
	if grace < 0 || grace > MaxStopGrace {
		return nil, invalid("grace period %v is out of range: give 0 to %d seconds", grace, int(MaxStopGrace/time.Second))
	}
	return m.stop(ctx, id, sandbox.ReasonStoppedByUser, grace)
}

// stop ends sandbox id with reason. The caller that moves the sandbox to
// TERMINATING does the work; concurrent callers wait for its end.
func (m *Manager) stop(ctx context.Context, id, reason string, grace time.Duration) (*sandbox.Sandbox, error) {
	if grace == 0 {
		grace = m.cfg.StopGrace
	}
	sb, changed, err := m.transition(ctx, id, active, sandbox.StateTerminating, reason, nil)
	if err != nil {
		return nil, err
	}
	if !changed {
		if sb.State == sandbox.StateTerminating {
			return m.waitFor(ctx, id, untilTerminal, grace+time.Minute)
		}
		return sb, nil
	}
	return m.finishStop(id, reason, grace)
}

// finishStop stops the container of a TERMINATING sandbox and records
// TERMINATED. It runs detached from the caller's context, so a client that
// hangs up mid-stop cannot leave the sandbox TERMINATING.
func (m *Manager) finishStop(id, reason string, grace time.Duration) (*sandbox.Sandbox, error) {
	ctx, cancel := context.WithTimeout(context.Background(), grace+time.Minute)
	defer cancel()
	if err := m.rt.Stop(ctx, id, grace); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
		// Record the end anyway: the container is deleted below or by the
		// retention purge, and the user asked for it to end.
		m.cfg.Logger.Warn("stopping sandbox", "sandbox", id, "error", err)
	}
	sb, _, err := m.transition(ctx, id, []sandbox.State{sandbox.StateTerminating}, sandbox.StateTerminated, reason, nil)
	if err != nil {
		return nil, err
	}
	m.scheduleRelease(id)
	return sb, nil
}

// stopAsync starts a stop in the background unless one is in flight.
func (m *Manager) stopAsync(id, reason string) {
	if _, busy := m.stopping.LoadOrStore(id, true); busy {
		return
	}
	m.goBackground(func() {
		defer m.stopping.Delete(id)
		// NotFound: deleted since it was scheduled.
		if _, err := m.stop(m.base, id, reason, 0); err != nil && !errors.Is(err, sandbox.ErrNotFound) && m.base.Err() == nil {
			m.cfg.Logger.Warn("stopping sandbox", "sandbox", id, "reason", reason, "error", err)
		}
	})
}

// Delete deletes a tenant's sandbox: its record at once (one store write;
// the caller's answer waits for nothing else), then its container in the
// background (teardown.go): a running main command gets the stop grace of
// Stop (SIGTERM, then SIGKILL), and the teardown waits its turn behind
// creates.
// A server that dies before the teardown leaves a container without a
// record, which Recover deletes on the next start.
func (m *Manager) Delete(ctx context.Context, tenantID, id string) error {
	sb, err := m.Get(ctx, tenantID, id)
	if err != nil {
		return err
	}
	if err := m.st.DeleteSandbox(ctx, id); err != nil {
		return err
	}
	m.running.Delete(id)
	m.deadlines.untrack(id)
	if !sb.State.Terminal() && m.cfg.OnStopping != nil {
		m.cfg.OnStopping(id)
	}
	m.notify.changed(id)
	// A running main command gets the grace of Stop. An idle sandbox
	// does not need it: its agent exits on SIGTERM at once, which ends
	// every process of the sandbox anyway.
	var grace time.Duration
	if !sb.State.Terminal() && len(sb.Start.Command) > 0 {
		grace = m.cfg.StopGrace
	}
	// Without a grace period the sandbox is parked at once: nothing in
	// it runs from here on, and its teardown may wait for creates to
	// pause (teardown.go). Not while cold creates come: its teardown then
	// runs at once, and the freeze and thaw would only add to it.
	parked := false
	if grace == 0 && !sb.State.Terminal() && m.cfg.Park != nil && !m.coldComing() {
		var perr error
		if parked, perr = m.cfg.Park(context.WithoutCancel(ctx), id); perr != nil && !errors.Is(perr, sandbox.ErrNotFound) {
			m.cfg.Logger.Warn("parking deleted sandbox", "sandbox", id, "error", perr)
		}
	}
	m.releaseRuntime(id, grace, parked)
	return nil
}
