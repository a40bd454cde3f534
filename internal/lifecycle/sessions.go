package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// Session close reasons.
const (
	ReasonClosedByClient = "closed by client"
	ReasonLeaseExpired   = "lease expired"
)

// MaxOpenSessions bounds the sessions one tenant has open at once. A
// session is a store row that the sweep checks until it closes; a tenant
// needs one per batch of sandboxes, not thousands.
const MaxOpenSessions = 1000

// CreateSession opens a session with defaults for its sandboxes; lease 0
// means the configured default.
func (m *Manager) CreateSession(ctx context.Context, tenantID string, d sandbox.SessionDefaults, lease time.Duration) (*sandbox.Session, error) {
	if lease == 0 {
		lease = m.cfg.DefaultLease
	}
	if lease < time.Second || lease > m.cfg.MaxLease {
		return nil, invalid("lease_seconds %d is out of range: give 1 to %d, or 0 for the default of %d",
			int64(lease/time.Second), int64(m.cfg.MaxLease/time.Second), int64(m.cfg.DefaultLease/time.Second))
	}
	if err := m.validateDefaults(d); err != nil {
		return nil, err
	}
	// Counted, not reserved: sessions opened at the same moment may pass the
	// bound by as many (their calls are bounded too).
	open, err := m.st.ListSessions(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	if len(open) >= MaxOpenSessions {
		return nil, &sandbox.Error{Kind: sandbox.ErrResourceExhausted, Reason: sandbox.ReasonQuotaExceeded, RetryAfter: m.cfg.QuotaRetryAfter,
			Message: fmt.Sprintf("tenant has %d open sessions, the most a tenant may have: close some (Session.close) or let their leases expire, then retry", len(open))}
	}
	now := m.cfg.Now()
	s := &sandbox.Session{ID: newID("ss-"), TenantID: tenantID, Defaults: d, Lease: lease, CreatedAt: now, LastHeartbeat: now}
	if err := m.st.CreateSession(ctx, s); err != nil {
		return nil, err
	}
	m.cfg.Logger.Info("session opened", "session", s.ID, "tenant", tenantID)
	return s, nil
}

func (m *Manager) validateDefaults(d sandbox.SessionDefaults) error {
	if d.Image != "" {
		if err := validateImage(d.Image); err != nil {
			return err
		}
	}
	if d.MaxLifetime != 0 {
		if err := m.validateLifetime(d.MaxLifetime); err != nil {
			return err
		}
	}
	if err := validateTags(d.Tags); err != nil {
		return err
	}
	if err := ValidateEnv(d.Env); err != nil {
		return err
	}
	if err := validateSecrets("defaults.secrets", d.Secrets, d.Env); err != nil {
		return err
	}
	if d.Network != nil {
		// Defaults always belong to a session.
		if err := ValidateNetwork(*d.Network, "session"); err != nil {
			return err
		}
		if err := m.checkNameResolver(*d.Network); err != nil {
			return err
		}
	}
	return validateResources(d.Resources)
}

func (m *Manager) getSession(ctx context.Context, tenantID, id string) (*sandbox.Session, error) {
	if err := ValidateID("session id", id); err != nil {
		return nil, err
	}
	return m.st.GetSession(ctx, tenantID, id)
}

// GetSession returns a tenant's session.
func (m *Manager) GetSession(ctx context.Context, tenantID, id string) (*sandbox.Session, error) {
	return m.getSession(ctx, tenantID, id)
}

// Heartbeat extends a session's lease. A closed session is
// FailedPrecondition SESSION_CLOSED.
func (m *Manager) Heartbeat(ctx context.Context, tenantID, id string) (*sandbox.Session, error) {
	if _, err := m.getSession(ctx, tenantID, id); err != nil {
		return nil, err
	}
	now := m.cfg.Now()
	return m.st.UpdateSession(ctx, id, func(s *sandbox.Session) error {
		if !s.ClosedAt.IsZero() {
			return sandbox.FailedPrecondition(sandbox.ReasonSessionClosed, "session %s is closed (%s): create a new session", s.ID, s.CloseReason)
		}
		s.LastHeartbeat = now
		return nil
	})
}

// CloseSession closes a tenant's session and stops all its sandboxes. It is
// idempotent.
func (m *Manager) CloseSession(ctx context.Context, tenantID, id string) (*sandbox.Session, error) {
	if _, err := m.getSession(ctx, tenantID, id); err != nil {
		return nil, err
	}
	s, err := m.closeSession(ctx, id, ReasonClosedByClient)
	if err != nil {
		return nil, err
	}
	// Stop synchronously, so the caller sees every sandbox ended on return.
	if err := m.stopSessionSandboxes(ctx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// closeSession marks a session closed (keeping the first close reason).
func (m *Manager) closeSession(ctx context.Context, id, reason string) (*sandbox.Session, error) {
	now := m.cfg.Now()
	return m.st.UpdateSession(ctx, id, func(s *sandbox.Session) error {
		if s.ClosedAt.IsZero() {
			s.ClosedAt = now
			s.CloseReason = reason
		}
		return nil
	})
}

// errLeaseRenewed aborts the close of a session whose heartbeat arrived
// after the sweep listed it.
var errLeaseRenewed = errors.New("lease renewed")

// expireSession closes a session for its lease, judging expiry on the record
// inside the update: a heartbeat that landed after the sweep read the
// session list keeps it open.
func (m *Manager) expireSession(ctx context.Context, id string) (closed bool, err error) {
	_, err = m.st.UpdateSession(ctx, id, func(s *sandbox.Session) error {
		now := m.cfg.Now()
		if !s.Expired(now) {
			return errLeaseRenewed
		}
		s.ClosedAt = now
		s.CloseReason = ReasonLeaseExpired
		return nil
	})
	if errors.Is(err, errLeaseRenewed) {
		return false, nil
	}
	return err == nil, err
}

// stopSessionSandboxes stops every non-terminal sandbox of s, in parallel,
// and returns once all ended.
func (m *Manager) stopSessionSandboxes(ctx context.Context, s *sandbox.Session) error {
	f := store.SandboxFilter{TenantID: s.TenantID, SessionID: s.ID, PageSize: 1000}
	for {
		page, next, err := m.st.ListSandboxes(ctx, f)
		if err != nil {
			return err
		}
		var g errgroup.Group
		for _, sb := range page {
			g.Go(func() error {
				_, err := m.stop(ctx, sb.ID, sandbox.ReasonStoppedBySession, 0)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		f.PageToken = next
	}
}
