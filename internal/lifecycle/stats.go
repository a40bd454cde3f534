package lifecycle

import (
	"context"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Stats returns what a tenant's running sandbox uses now and its limits.
// A sandbox of another tenant is NotFound; one that is not RUNNING is
// FailedPrecondition SANDBOX_NOT_RUNNING, naming its state. As with Agent,
// a sandbox that is still starting is waited for, so that "create, then
// read stats" needs no Wait first.
func (m *Manager) Stats(ctx context.Context, tenantID, id string) (sandbox.Stats, error) {
	sr, ok := sandbox.OptionalOf[sandbox.StatsReader](m.rt)
	if !ok {
		return sandbox.Stats{}, sandbox.FailedPrecondition(sandbox.ReasonStatsUnsupported,
			"this server's runtime does not report sandboxes' resource usage")
	}
	// Fast path as in Agent: a sandbox this manager saw become RUNNING
	// needs no store read; a stale entry falls through to the store.
	if t, ok := m.running.Load(id); ok && t == tenantID {
		if st, err := sr.Stats(ctx, id); err == nil {
			return st, nil
		}
	}
	sb, err := m.Get(ctx, tenantID, id)
	if err != nil {
		return sandbox.Stats{}, err
	}
	if sb.State == sandbox.StatePending || sb.State == sandbox.StateCreating {
		if sb, err = m.waitFor(ctx, id, UntilRunning, m.cfg.CreateTimeout); err != nil {
			return sandbox.Stats{}, err
		}
	}
	if sb.State != sandbox.StateRunning {
		return sandbox.Stats{}, notRunning(sb)
	}
	return sr.Stats(ctx, id)
}
