package lifecycle

import (
	"context"
	"errors"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// claimRefillDelay is how long after a hit a pool starts its refill.
const claimRefillDelay = 50 * time.Millisecond

// claimWarm serves req from a matching warm pool: it takes an idle sandbox
// and turns it into the tenant's CREATING record in one store transaction
// (keeping its id); the caller then applies the request's env, files,
// working dir, user and command (startWarm). A request that brings none
// of those, claiming a sandbox whose agent applied the image's defaults
// already (refillOne), is stored RUNNING at once instead (insertedStarted):
// its start is done, and the claim costs one store write and no agent
// call. It returns a nil record, with no error, when no pool matches or
// the pool is empty (a miss): the caller then creates the sandbox cold.
// The caller holds the room reserved in the tenant's quota (quota.go).
func (m *Manager) claimWarm(ctx context.Context, tenantID string, req *CreateRequest) (*sandbox.Sandbox, int, error) {
	if req.Network != nil && !req.Network.IsDefault() {
		// Pool sandboxes were set up with the default network policy.
		return nil, 0, nil
	}
	p := m.poolFor(req)
	if p == nil {
		return nil, 0, nil
	}
	for {
		id, started, ok := p.take()
		if !ok {
			p.count(false)
			p.signal()
			return nil, 0, nil
		}
		sb := m.newRecord(tenantID, req, id)
		sb.State, sb.Reason = sandbox.StateCreating, reasonClaimed
		sb.Transitions = append(sb.Transitions, sandbox.Transition{State: sandbox.StateCreating, Reason: reasonClaimed, At: sb.CreatedAt})
		how := insertedWarm
		if started && sb.Start.Empty() {
			how = insertedStarted
			sb.State, sb.Reason, sb.StartedAt = sandbox.StateRunning, sandbox.ReasonStarted, sb.CreatedAt
			sb.Transitions = append(sb.Transitions, sandbox.Transition{State: sandbox.StateRunning, Reason: sandbox.ReasonStarted, At: sb.CreatedAt})
		}
		err := m.st.ClaimPoolSandbox(ctx, sb)
		switch {
		case err == nil:
			p.count(true)
			m.deadlines.track(sb)
			// The refill starts a moment later: its OCI runtime and agent
			// start take the CPU for tens of milliseconds, which the
			// claimed sandbox's start and first command need now.
			time.AfterFunc(claimRefillDelay, p.signal)
			m.cfg.Logger.Info("sandbox accepted", "sandbox", sb.ID, "tenant", tenantID, "image", sb.Spec.Image, "pool", p.key)
			return sb, how, nil
		case errors.Is(err, sandbox.ErrNotFound):
			// Removed from the store under us (another replica claimed
			// it, or it was cleaned up): try the next one.
			continue
		default:
			p.putBack(id, started)
			if errors.Is(err, sandbox.ErrAlreadyExists) && req.RequestID != "" {
				// A concurrent retry with the same request id won the race.
				existing, gerr := m.st.GetSandboxByRequestID(ctx, tenantID, req.RequestID)
				return existing, insertedBefore, gerr
			}
			return nil, 0, err
		}
	}
}

// mayClaimWarm reports whether req, as it stands before defaults are
// applied, could be served by a warm pool with an idle sandbox: a hint for
// the early admission check, which must not refuse what a pool can serve.
func (m *Manager) mayClaimWarm(req *CreateRequest) bool {
	if len(m.pools.order) == 0 {
		return false
	}
	if req.SessionID != "" || req.Image == "" {
		return true // defaults still to come: let the full path decide
	}
	p := m.poolFor(req)
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle) > 0
}
