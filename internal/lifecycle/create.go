package lifecycle

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// CreateRequest is a validated-on-Create request for a new sandbox, in
// domain types. Zero fields take the session's defaults, then the server's.
type CreateRequest struct {
	Image      string
	Command    []string
	Env        map[string]string
	WorkingDir string
	User       string
	Tags       []string
	Resources  sandbox.Resources
	// MaxLifetime nil means the default; a set value is range-checked.
	MaxLifetime *time.Duration
	Files       []sandbox.File
	// RequestID makes retries idempotent per tenant.
	RequestID string
	SessionID string
	// Network nil takes the session's default policy, else the default.
	Network *sandbox.NetworkPolicy
}

// Create records a new sandbox and starts creating it in the background. It
// returns the record at once (CREATING). A retry with the same RequestID
// returns the sandbox the first call made.
func (m *Manager) Create(ctx context.Context, tenantID string, req CreateRequest) (*sandbox.Sandbox, error) {
	if req.RequestID != "" {
		if sb, err := m.st.GetSandboxByRequestID(ctx, tenantID, req.RequestID); err == nil {
			return sb, nil
		} else if !errors.Is(err, sandbox.ErrNotFound) {
			return nil, err
		}
	}
	var netDefault *sandbox.NetworkPolicy
	if req.SessionID != "" {
		if err := ValidateID("session_id", req.SessionID); err != nil {
			return nil, err
		}
		s, err := m.getSession(ctx, tenantID, req.SessionID)
		if err != nil {
			return nil, err
		}
		if !s.ClosedAt.IsZero() {
			return nil, sandbox.FailedPrecondition(sandbox.ReasonSessionClosed, "session %s is closed (%s): create a new session", s.ID, s.CloseReason)
		}
		mergeDefaults(&req, s.Defaults)
		netDefault = s.Defaults.Network
	}
	eff := effectiveNetwork(&req, tenantID, netDefault)
	req.Network = &eff
	if req.Image == "" {
		req.Image = m.cfg.DefaultImage
	}
	if req.MaxLifetime == nil {
		d := m.cfg.DefaultLifetime
		req.MaxLifetime = &d
	}
	if err := m.validate(&req); err != nil {
		return nil, err
	}

	sb, how, err := m.insert(ctx, tenantID, &req)
	switch {
	case err != nil:
		return nil, err
	case how == insertedWarm:
		m.goBackground(func() { m.launch(sb, true) })
		return sb, nil
	case how == insertedBefore:
		return sb, nil
	}
	sb, _, err = m.transition(ctx, sb.ID, []sandbox.State{sandbox.StatePending}, sandbox.StateCreating, reasonCreating, nil)
	if err != nil {
		return nil, err
	}
	m.cfg.Logger.Info("sandbox accepted", "sandbox", sb.ID, "tenant", tenantID, "image", sb.Spec.Image)
	m.goBackground(func() { m.launch(sb, false) })
	return sb, nil
}

// How insert made the record it returns.
const (
	insertedCold   = iota // a new PENDING record, to be created cold
	insertedWarm          // a claimed warm pool sandbox, CREATING
	insertedBefore        // an earlier create with the same request id
)

// insert checks the tenant's quota, then claims a warm pool sandbox for req
// or stores a new PENDING record. The tenant's lock covers the whole, so a
// burst cannot overshoot the quota between a pool miss and the insert.
func (m *Manager) insert(ctx context.Context, tenantID string, req *CreateRequest) (*sandbox.Sandbox, int, error) {
	mu := m.tenantLock(tenantID)
	mu.Lock()
	defer mu.Unlock()
	if err := m.checkQuota(ctx, tenantID); err != nil {
		return nil, 0, err
	}
	if sb, how, err := m.claimWarm(ctx, tenantID, req); err != nil || sb != nil {
		return sb, how, err
	}
	sb := m.newRecord(tenantID, req, newID("sb-"))
	if err := m.st.CreateSandbox(ctx, sb); err != nil {
		if errors.Is(err, sandbox.ErrAlreadyExists) && req.RequestID != "" {
			// A concurrent retry with the same request id won the race.
			sb, err := m.st.GetSandboxByRequestID(ctx, tenantID, req.RequestID)
			return sb, insertedBefore, err
		}
		return nil, 0, err
	}
	return sb, insertedCold, nil
}

// checkQuota fails with QUOTA_EXCEEDED when the tenant has no room for one
// more sandbox. The caller holds the tenant's lock.
func (m *Manager) checkQuota(ctx context.Context, tenantID string) error {
	limit := m.cfg.MaxSandboxesPerTenant
	if t, err := m.st.GetTenant(ctx, tenantID); err == nil && t.MaxSandboxes > 0 {
		limit = t.MaxSandboxes
	}
	n, err := m.st.CountActive(ctx, tenantID)
	if err != nil {
		return err
	}
	if n >= limit {
		e := sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonQuotaExceeded,
			"tenant has %d active sandboxes, its quota is %d: stop or wait for some, then retry", n, limit)
		e.RetryAfter = m.cfg.QuotaRetryAfter
		return e
	}
	return nil
}

// newRecord returns the PENDING record of req with sandbox id id.
func (m *Manager) newRecord(tenantID string, req *CreateRequest, id string) *sandbox.Sandbox {
	now := m.cfg.Now()
	return &sandbox.Sandbox{
		ID: id, TenantID: tenantID, SessionID: req.SessionID, RequestID: req.RequestID,
		Spec: sandbox.Spec{ID: id, Image: req.Image, Resources: req.Resources, Network: networkOf(req)},
		Start: sandbox.StartSpec{Command: req.Command, Env: req.Env, WorkingDir: req.WorkingDir,
			User: req.User, Files: req.Files},
		Tags:        req.Tags,
		MaxLifetime: *req.MaxLifetime,
		State:       sandbox.StatePending,
		Reason:      sandbox.ReasonRequested,
		CreatedAt:   now,
		ExpiresAt:   now.Add(*req.MaxLifetime),
		Transitions: []sandbox.Transition{{State: sandbox.StatePending, Reason: sandbox.ReasonRequested, At: now}},
	}
}

func networkOf(req *CreateRequest) sandbox.NetworkPolicy {
	if req.Network == nil {
		return sandbox.NetworkPolicy{}
	}
	return *req.Network
}

// mergeDefaults fills req's unset fields from a session's defaults; tags
// and env merge, with the request's values winning.
func mergeDefaults(req *CreateRequest, d sandbox.SessionDefaults) {
	if req.Image == "" {
		req.Image = d.Image
	}
	if req.MaxLifetime == nil && d.MaxLifetime > 0 {
		lt := d.MaxLifetime
		req.MaxLifetime = &lt
	}
	if len(d.Env) > 0 {
		env := maps.Clone(d.Env)
		maps.Copy(env, req.Env)
		req.Env = env
	}
	tags := slices.Clone(d.Tags)
	for _, t := range req.Tags {
		if !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	req.Tags = tags
	r := &req.Resources
	if r.CPUMillis == 0 {
		r.CPUMillis = d.Resources.CPUMillis
	}
	if r.MemoryBytes == 0 {
		r.MemoryBytes = d.Resources.MemoryBytes
	}
	if r.Pids == 0 {
		r.Pids = d.Resources.Pids
	}
}

// launch creates (unless warm: a pool did) and starts the sandbox in the
// runtime, in the background, then watches its main command. Any failure
// ends the sandbox FAILED with a reason the user can act on, and leaves
// nothing in the runtime.
func (m *Manager) launch(sb *sandbox.Sandbox, warm bool) {
	ctx, cancel := context.WithTimeout(m.base, m.cfg.CreateTimeout)
	defer cancel()
	log := m.cfg.Logger.With("sandbox", sb.ID)
	fail := func(step string, err error) {
		if m.base.Err() != nil {
			return // shutting down: Recover decides on the next start
		}
		log.Warn("sandbox start failed", "step", step, "error", err)
		m.transition(context.Background(), sb.ID, notTerminal, sandbox.StateFailed,
			sandbox.ReasonStartFailed+": "+errorReason(err), nil)
	}
	if !warm {
		if _, err := m.rt.Create(ctx, sb.Spec); err != nil {
			fail("create", err)
			return
		}
	}
	if err := m.rt.Start(ctx, sb.ID, sb.Start); err != nil {
		m.cleanupRuntime(sb.ID, time.Second)
		fail("start", err)
		return
	}
	_, ok, err := m.transition(ctx, sb.ID, []sandbox.State{sandbox.StateCreating}, sandbox.StateRunning, sandbox.ReasonStarted, nil)
	if err != nil || !ok {
		// Stopped (or deleted) while it was being created: the stopper
		// found nothing in the runtime to stop, so clean up here.
		m.cleanupRuntime(sb.ID, 0)
		if err == nil {
			m.notify.changed(sb.ID)
		}
		return
	}
	log.Info("sandbox running")
	m.watchMain(sb.ID)
}

// errorReason renders err for a transition reason: its kind's reason code
// and its message, so the user sees e.g. "IMAGE_NOT_FOUND: image ...".
func errorReason(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out creating the sandbox: check the image's size and the registry's reachability"
	}
	if r := sandbox.ReasonOf(err); r != "" {
		return r + ": " + err.Error()
	}
	return err.Error()
}

// cleanupRuntime stops and deletes a sandbox's container, ignoring NotFound.
func (m *Manager) cleanupRuntime(id string, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace+time.Minute)
	defer cancel()
	if err := m.rt.Delete(ctx, id); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
		m.cfg.Logger.Warn("deleting sandbox from runtime", "sandbox", id, "error", err)
	}
}
