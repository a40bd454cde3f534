package lifecycle

import (
	"context"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Agent returns a client of a tenant's running sandbox's agent, for
// processes, files and logs. The caller closes it. A sandbox that is still
// starting (PENDING, CREATING) is waited for; one that is not RUNNING then
// is FailedPrecondition SANDBOX_NOT_RUNNING.
func (m *Manager) Agent(ctx context.Context, tenantID, id string) (sandbox.Agent, error) {
	// Fast path: a sandbox this manager saw become RUNNING and not leave
	// it (Manager.running) needs no store read. An entry can be a moment
	// stale (a stop racing the start): then the runtime no longer has the
	// agent and the store's answer below says why.
	if t, ok := m.running.Load(id); ok && t == tenantID {
		if a, err := m.rt.Agent(ctx, id); err == nil {
			return a, nil
		}
		m.running.Delete(id)
	}
	sb, err := m.Get(ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	if sb.State == sandbox.StatePending || sb.State == sandbox.StateCreating {
		// Still starting: wait for it here rather than send the caller
		// back to wait, so that "create, then exec" needs no Wait round
		// trip and the call runs the moment the sandbox does. A create
		// ends within CreateTimeout, RUNNING or not; ctx bounds it too.
		if sb, err = m.waitFor(ctx, id, UntilRunning, m.cfg.CreateTimeout); err != nil {
			return nil, err
		}
	}
	if sb.State != sandbox.StateRunning {
		return nil, notRunning(sb)
	}
	return m.rt.Agent(ctx, id)
}

// LogAgent is Agent for reading logs: it also serves a sandbox that ended
// recently, while its stopped container is kept (see Config.Linger).
func (m *Manager) LogAgent(ctx context.Context, tenantID, id string) (sandbox.Agent, error) {
	sb, err := m.Get(ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	if sb.State != sandbox.StateRunning && !sb.State.Terminal() {
		return nil, notRunning(sb)
	}
	a, err := m.rt.Agent(ctx, id)
	if err != nil && sb.State.Terminal() {
		return nil, sandbox.FailedPrecondition(sandbox.ReasonSandboxNotRunning,
			"sandbox %s ended (%s, %s) and its logs are no longer kept: read logs while it runs, or with follow", id, sb.State, sb.Reason)
	}
	return a, err
}

func notRunning(sb *sandbox.Sandbox) error {
	hint := "wait for it to be RUNNING (Wait with until=RUNNING)"
	if sb.State.Terminal() {
		hint = "it has ended; create a new sandbox"
	}
	return sandbox.FailedPrecondition(sandbox.ReasonSandboxNotRunning, "sandbox %s is %s (%s): %s", sb.ID, sb.State, sb.Reason, hint)
}
