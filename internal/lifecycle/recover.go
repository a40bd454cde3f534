package lifecycle

import (
	"context"
	"errors"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// reasonInterrupted is recorded for a sandbox whose create was cut short by
// a server restart.
const reasonInterrupted = sandbox.ReasonStartFailed + ": the server restarted while creating it; create it again"

// Recover reconciles the store with the runtime after a (re)start: every
// RUNNING record whose container still runs is re-attached (its main
// command watched again); one whose container is gone ends FAILED with
// reason "lost"; creates and stops cut short are finished; containers
// without a live record are deleted, except idle warm-pool sandboxes, which
// recoverPools reuses or removes.
func (m *Manager) Recover(ctx context.Context) error {
	infos, err := m.rt.List(ctx)
	if err != nil {
		return err
	}
	inRuntime := map[string]sandbox.Info{}
	for _, info := range infos {
		inRuntime[info.ID] = info
	}
	live := map[string]bool{}
	f := store.SandboxFilter{PageSize: 1000}
	for {
		page, next, err := m.st.ListSandboxes(ctx, f)
		if err != nil {
			return err
		}
		for _, sb := range page {
			live[sb.ID] = true
			// Scheduled first: recoverOne's transitions drop what ends.
			m.deadlines.track(sb)
			info, ok := inRuntime[sb.ID]
			m.recoverOne(ctx, sb, info, ok)
		}
		if next == "" {
			break
		}
		f.PageToken = next
	}
	pooled, err := m.st.ListPoolSandboxes(ctx)
	if err != nil {
		return err
	}
	for _, p := range pooled {
		live[p.ID] = true
	}
	for _, info := range infos {
		if live[info.ID] {
			continue
		}
		sb, err := m.st.GetSandbox(ctx, "", info.ID)
		switch {
		case errors.Is(err, sandbox.ErrNotFound):
			m.cfg.Logger.Info("deleting sandbox without a record", "sandbox", info.ID)
			m.cleanupRuntime(info.ID, 0)
		case err != nil:
			return err
		case sb.State.Terminal() && m.cfg.Now().Sub(sb.EndedAt) < m.cfg.Linger:
			m.scheduleRelease(info.ID)
		default:
			m.cleanupRuntime(info.ID, 0)
		}
	}
	return nil
}

func (m *Manager) recoverOne(ctx context.Context, sb *sandbox.Sandbox, info sandbox.Info, inRuntime bool) {
	log := m.cfg.Logger.With("sandbox", sb.ID)
	switch sb.State {
	case sandbox.StateRunning:
		switch {
		case inRuntime && info.Status == sandbox.RuntimeRunning:
			log.Info("re-attached to running sandbox")
			m.goBackground(func() {
				// Again: the agent may lack it (made by an older
				// server, or a claim whose hand-over a crash cut).
				m.handOverDeadline(sb)
				m.watchMain(sb.ID)
			})
		case inRuntime && info.Exit != nil:
			m.mainExited(sb.ID, *info.Exit)
		default:
			log.Warn("sandbox lost while the server was down")
			if _, _, err := m.transition(ctx, sb.ID, []sandbox.State{sandbox.StateRunning}, sandbox.StateFailed, sandbox.ReasonLost, nil); err == nil && inRuntime {
				m.cleanupRuntime(sb.ID, 0)
			}
		}
	case sandbox.StatePending, sandbox.StateCreating:
		log.Warn("sandbox create interrupted by restart")
		m.transition(ctx, sb.ID, []sandbox.State{sandbox.StatePending, sandbox.StateCreating}, sandbox.StateFailed, reasonInterrupted, nil)
		if inRuntime {
			m.cleanupRuntime(sb.ID, 0)
		}
	case sandbox.StateTerminating:
		reason := sb.Reason
		m.goBackground(func() {
			if _, err := m.finishStop(sb.ID, reason, 0); err != nil {
				log.Warn("finishing interrupted stop", "error", err)
			}
		})
	}
}
