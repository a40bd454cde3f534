package lifecycle

import (
	"context"
	"errors"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// sweepLoop enforces session leases, lifetimes and session closes every
// SweepInterval, and purges old terminal records every PurgeInterval. All
// are computed from the store, so they hold across restarts.
func (m *Manager) sweepLoop() {
	tick := time.NewTicker(m.cfg.SweepInterval)
	defer tick.Stop()
	lastPurge := time.Time{}
	for {
		m.sweepLeases(m.base)
		m.sweepSandboxes(m.base)
		if now := m.cfg.Now(); now.Sub(lastPurge) >= m.cfg.PurgeInterval {
			lastPurge = now
			m.Purge(m.base)
		}
		select {
		case <-m.base.Done():
			return
		case <-tick.C:
		}
	}
}

// sweepSandboxes stops every live sandbox whose lifetime ran out (reason
// lifetime) or whose session is closed (reason session closed). The second
// rule makes a session close complete even if the server died mid-way.
func (m *Manager) sweepSandboxes(ctx context.Context) {
	var live []*sandbox.Sandbox
	f := store.SandboxFilter{PageSize: 1000}
	for {
		page, next, err := m.st.ListSandboxes(ctx, f)
		if err != nil {
			m.sweepError("sandbox sweep", err)
			return
		}
		live = append(live, page...)
		if next == "" {
			break
		}
		f.PageToken = next
	}
	// Sessions are listed after sandboxes: a sandbox's session existed
	// before the sandbox did, so it is in this list unless it is closed.
	sessions, err := m.st.ListSessions(ctx, "")
	if err != nil {
		m.sweepError("sandbox sweep", err)
		return
	}
	open := map[string]bool{}
	for _, s := range sessions {
		open[s.ID] = true
	}
	now := m.cfg.Now()
	for _, sb := range live {
		switch {
		case sb.State == sandbox.StateTerminating:
		case !sb.ExpiresAt.IsZero() && !now.Before(sb.ExpiresAt):
			m.stopAsync(sb.ID, sandbox.ReasonLifetime)
		case sb.SessionID != "" && !open[sb.SessionID]:
			m.stopAsync(sb.ID, sandbox.ReasonStoppedBySession)
		}
	}
}

func (m *Manager) sweepError(what string, err error) {
	if m.base.Err() == nil {
		m.cfg.Logger.Warn(what, "error", err)
	}
}

// sweepLeases closes every open session whose lease ran out; the next
// sandbox sweep stops its sandboxes.
func (m *Manager) sweepLeases(ctx context.Context) {
	sessions, err := m.st.ListSessions(ctx, "")
	if err != nil {
		m.sweepError("lease sweep", err)
		return
	}
	now := m.cfg.Now()
	for _, s := range sessions {
		if !s.Expired(now) {
			continue
		}
		closed, err := m.expireSession(ctx, s.ID)
		if err != nil {
			m.sweepError("closing session", err)
		}
		if !closed {
			continue
		}
		m.cfg.Logger.Info("session lease expired", "session", s.ID, "tenant", s.TenantID)
	}
}

// Purge deletes terminal records that ended more than the retention period
// ago, and whatever their containers left in the runtime.
func (m *Manager) Purge(ctx context.Context) {
	ids, err := m.st.PurgeSandboxes(ctx, m.cfg.Now().Add(-m.cfg.Retention))
	if err != nil {
		m.sweepError("retention purge", err)
		return
	}
	for _, id := range ids {
		if err := m.rt.Delete(ctx, id); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
			m.cfg.Logger.Warn("purging sandbox from runtime", "sandbox", id, "error", err)
		}
		m.notify.changed(id)
	}
	if len(ids) > 0 {
		m.cfg.Logger.Info("purged terminal sandboxes", "count", len(ids))
	}
}
