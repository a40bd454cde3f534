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
	}
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

	sb, err := m.insert(ctx, tenantID, &req)
	if err != nil {
		return nil, err
	}
	sb, _, err = m.transition(ctx, sb.ID, []sandbox.State{sandbox.StatePending}, sandbox.StateCreating, reasonCreating, nil)
	if err != nil {
		return nil, err
	}
	m.cfg.Logger.Info("sandbox accepted", "sandbox", sb.ID, "tenant", tenantID, "image", sb.Spec.Image)
	m.goBackground(func() { m.launch(sb) })
	return sb, nil
}

// insert checks the tenant's quota and stores the PENDING record.
func (m *Manager) insert(ctx context.Context, tenantID string, req *CreateRequest) (*sandbox.Sandbox, error) {
	mu := m.tenantLock(tenantID)
	mu.Lock()
	defer mu.Unlock()
	limit := m.cfg.MaxSandboxesPerTenant
	if t, err := m.st.GetTenant(ctx, tenantID); err == nil && t.MaxSandboxes > 0 {
		limit = t.MaxSandboxes
	}
	n, err := m.st.CountActive(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	if n >= limit {
		e := sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonQuotaExceeded,
			"tenant has %d active sandboxes, its quota is %d: stop or wait for some, then retry", n, limit)
		e.RetryAfter = m.cfg.QuotaRetryAfter
		return nil, e
	}
	now := m.cfg.Now()
	id := newID("sb-")
	sb := &sandbox.Sandbox{
		ID: id, TenantID: tenantID, SessionID: req.SessionID, RequestID: req.RequestID,
		Spec: sandbox.Spec{ID: id, Image: req.Image, Resources: req.Resources},
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
	if err := m.st.CreateSandbox(ctx, sb); err != nil {
		if errors.Is(err, sandbox.ErrAlreadyExists) && req.RequestID != "" {
			// A concurrent retry with the same request id won the race.
			return m.st.GetSandboxByRequestID(ctx, tenantID, req.RequestID)
		}
		return nil, err
	}
	return sb, nil
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

// launch creates and starts the sandbox in the runtime, in the background,
// then watches its main command. Any failure ends the sandbox FAILED with
// a reason the user can act on, and leaves nothing in the runtime.
func (m *Manager) launch(sb *sandbox.Sandbox) {
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
	if _, err := m.rt.Create(ctx, sb.Spec); err != nil {
		fail("create", err)
		return
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
