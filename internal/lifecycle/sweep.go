package lifecycle

import (
	"context"
	"errors"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// sweepLoop enforces lifetimes, session leases and session closes every
// SweepInterval, and purges old terminal records every PurgeInterval.
// Lifetimes and sessions come from the in-memory schedule (deadlines.go),
// so a sweep with nothing due costs one read of the open sessions however
// many sandboxes live. The schedule is rebuilt from the store at start
// (Recover) and re-read in full every SafetySweepInterval, so everything
// still holds across restarts and replicas. lastFull is when Recover read
// the store.
func (m *Manager) sweepLoop(lastFull time.Time) {
	tick := time.NewTicker(m.cfg.SweepInterval)
	defer tick.Stop()
	lastPurge := time.Time{}
	for {
		now := m.cfg.Now()
		full := now.Sub(lastFull) >= m.cfg.SafetySweepInterval
		if full {
			lastFull = now
		}
		m.sweep(m.base, full)
		if now.Sub(lastPurge) >= m.cfg.PurgeInterval {
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

// sweep is one pass: with full, the schedule is first re-read from the
// store (the safety net); then every sandbox whose lifetime ran out is
// stopped (reason lifetime), every session whose lease ran out is closed,
// and every tracked sandbox of a closed session is stopped (reason session
// closed). The last rule also completes a session close that a server
// death cut short, and catches a sandbox created while its session closed.
func (m *Manager) sweep(ctx context.Context, full bool) {
	if full {
		m.resync(ctx)
	}
	for _, id := range m.deadlines.due(m.cfg.Now()) {
		m.stopAsync(id, sandbox.ReasonLifetime)
	}
	// The sessions with tracked sandboxes are taken before the open ones
	// are listed: a tracked sandbox's session existed before the sandbox
	// was stored, so it is in the list unless it is closed.
	tracked := m.deadlines.sessions()
	sessions, err := m.st.ListSessions(ctx, "")
	if err != nil {
		m.sweepError("session sweep", err)
		return
	}
	open := make(map[string]bool, len(sessions))
	for _, s := range sessions {
		open[s.ID] = true
	}
	for _, s := range m.expireLeases(ctx, sessions) {
		open[s] = false
	}
	for _, s := range tracked {
		if open[s] {
			continue
		}
		for _, id := range m.deadlines.takeSession(s) {
			m.stopAsync(id, sandbox.ReasonStoppedBySession)
		}
	}
}

// resync feeds every live record of the store into the schedule: the
// sandboxes other replicas created, and any this server's schedule lost
// (a stop that failed after its entry was taken).
func (m *Manager) resync(ctx context.Context) {
	f := store.SandboxFilter{States: active, PageSize: 1000}
	for {
		page, next, err := m.st.ListSandboxes(ctx, f)
		if err != nil {
			m.sweepError("lifetime safety sweep", err)
			return
		}
		for _, sb := range page {
			m.deadlines.track(sb)
		}
		if next == "" {
			return
		}
		f.PageToken = next
	}
}

func (m *Manager) sweepError(what string, err error) {
	if m.base.Err() == nil {
		m.cfg.Logger.Warn(what, "error", err)
	}
}

// expireLeases closes every listed session whose lease ran out, and
// returns their ids.
func (m *Manager) expireLeases(ctx context.Context, sessions []*sandbox.Session) []string {
	now := m.cfg.Now()
	var closed []string
	for _, s := range sessions {
		if !s.Expired(now) {
			continue
		}
		ok, err := m.expireSession(ctx, s.ID)
		if err != nil {
			m.sweepError("closing session", err)
		}
		if !ok {
			continue
		}
		closed = append(closed, s.ID)
		m.cfg.Logger.Info("session lease expired", "session", s.ID, "tenant", s.TenantID)
	}
	return closed
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
