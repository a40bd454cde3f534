package lifecycle

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// poolCheckLoop drops idle pool sandboxes whose container stopped while
// they waited (OOM, a killed agent, a host cleanup), every
// PoolCheckInterval, so that a claim never gets a dead sandbox it could
// have been spared; the pools then refill.
func (m *Manager) poolCheckLoop() {
	tick := time.NewTicker(m.cfg.PoolCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-m.base.Done():
			return
		case <-tick.C:
		}
		m.checkPools(m.base)
	}
}

// checkPools removes the idle sandboxes the runtime no longer runs.
func (m *Manager) checkPools(ctx context.Context) {
	infos, err := m.rt.List(ctx)
	if err != nil {
		m.sweepError("pool health check", err)
		return
	}
	running := map[string]bool{}
	for _, info := range infos {
		running[info.ID] = info.Status == sandbox.RuntimeRunning && info.Exit == nil
	}
	for _, p := range m.pools.order {
		p.mu.Lock()
		var dead []string
		p.idle = slices.DeleteFunc(p.idle, func(id string) bool {
			if running[id] {
				return false
			}
			dead = append(dead, id)
			delete(p.started, id)
			return true
		})
		p.mu.Unlock()
		for _, id := range dead {
			m.cfg.Logger.Warn("idle warm pool sandbox stopped; replacing it", "sandbox", id, "pool", p.key)
			if err := m.st.DeletePoolSandbox(ctx, id); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
				m.sweepError("pool health check", err)
			}
			m.cleanupRuntime(id, 0)
		}
		if len(dead) > 0 {
			p.signal()
		}
	}
}
