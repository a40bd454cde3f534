package lifecycle

import (
	"context"
	"errors"
	"slices"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// errSkip aborts a store update whose transition no longer applies.
var errSkip = errors.New("transition does not apply")

// reasonCreating is the reason recorded with CREATING.
const reasonCreating = "creating"

// transition moves sandbox id to state to, if its current state is one of
// from, recording reason and the time, and applying mut (may be nil) in the
// same store transaction. It returns the record and whether it changed;
// when the state was not in from, the current record is returned unchanged.
func (m *Manager) transition(ctx context.Context, id string, from []sandbox.State, to sandbox.State, reason string, mut func(*sandbox.Sandbox)) (*sandbox.Sandbox, bool, error) {
	now := m.cfg.Now()
	sb, err := m.st.UpdateSandbox(ctx, id, func(sb *sandbox.Sandbox) error {
		if !slices.Contains(from, sb.State) {
			return errSkip
		}
		sb.State = to
		sb.Reason = reason
		sb.Transitions = append(sb.Transitions, sandbox.Transition{State: to, Reason: reason, At: now})
		switch {
		case to == sandbox.StateRunning:
			sb.StartedAt = now
		case to.Terminal():
			sb.EndedAt = now
		}
		if mut != nil {
			mut(sb)
		}
		return nil
	})
	if errors.Is(err, errSkip) {
		cur, gerr := m.st.GetSandbox(ctx, "", id)
		return cur, false, gerr
	}
	if err != nil {
		return nil, false, err
	}
	m.deadlines.track(sb) // drops it once it stops or ends
	if to == sandbox.StateRunning {
		m.running.Store(id, sb.TenantID)
	} else {
		m.running.Delete(id)
	}
	if (to == sandbox.StateTerminating || to.Terminal()) && m.cfg.OnStopping != nil {
		m.cfg.OnStopping(id)
	}
	m.notify.changed(id)
	if to.Terminal() {
		m.cfg.Logger.Info("sandbox ended", "sandbox", id, "state", to, "reason", reason)
	}
	return sb, true, nil
}

// Non-terminal state sets used as transition sources.
var (
	active      = []sandbox.State{sandbox.StatePending, sandbox.StateCreating, sandbox.StateRunning}
	notTerminal = []sandbox.State{sandbox.StatePending, sandbox.StateCreating, sandbox.StateRunning, sandbox.StateTerminating}
)
