package lifecycle

import (
	"context"
	"errors"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// recoverPools re-finds the idle pool sandboxes an earlier server process
// left in the store: one whose container still runs, of a pool that is
// still configured and has room, becomes idle again; any other is removed
// (its store row first, so a crash in between leaves only a container
// without a record, which Recover deletes).
func (m *Manager) recoverPools(ctx context.Context) error {
	rows, err := m.st.ListPoolSandboxes(ctx)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return nil
	}
	infos, err := m.rt.List(ctx)
	if err != nil {
		return err
	}
	inRuntime := map[string]sandbox.Info{}
	for _, info := range infos {
		inRuntime[info.ID] = info
	}
	for _, row := range rows {
		p := m.pools.byKey[row.Pool]
		info, ok := inRuntime[row.ID]
		if p != nil && ok && info.Status == sandbox.RuntimeRunning && info.Exit == nil && len(p.idle) < p.cfg.Max {
			p.idle = append(p.idle, row.ID)
			m.cfg.Logger.Info("re-found idle warm pool sandbox", "sandbox", row.ID, "pool", row.Pool)
			continue
		}
		m.cfg.Logger.Info("removing idle pool sandbox that cannot be reused", "sandbox", row.ID, "pool", row.Pool,
			"pool_configured", p != nil, "running", ok && info.Status == sandbox.RuntimeRunning)
		if err := m.st.DeletePoolSandbox(ctx, row.ID); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
			return err
		}
		if ok {
			m.cleanupRuntime(row.ID, 0)
		}
	}
	return nil
}
