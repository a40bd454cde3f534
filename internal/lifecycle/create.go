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
	// Ports are published through sbx's proxy; tokens are made here.
	Ports []sandbox.Port
	// Secrets are injected as env vars; values are resolved at Create.
	Secrets []sandbox.SecretRef
}

// Create records a new sandbox and starts creating it in the background. It
// returns the record at once (CREATING), or, for a sandbox claimed from a
// warm pool, once it runs (RUNNING). A retry with the same RequestID
// returns the sandbox the first call made. When the server already creates
// and queues as many sandboxes as it may (admission.go), it refuses with
// RESOURCE_EXHAUSTED CREATE_QUEUE_FULL and a retry delay.
func (m *Manager) Create(ctx context.Context, tenantID string, req CreateRequest) (*sandbox.Sandbox, error) {
	m.inCreate.Add(1) // teardowns give way (teardown.go)
	m.lastCreate.Store(time.Now().UnixNano())
	defer func() {
		m.inCreate.Add(-1)
		m.lastCreate.Store(time.Now().UnixNano())
	}()
	if req.RequestID == "" && !m.mayClaimWarm(&req) {
		// Refuse early under a burst: before any store access or lock.
		// (A retry with a request id first looks for its earlier create.)
		if err := m.admit.check(); err != nil {
			return nil, err
		}
	}
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
	if a, ok := sandbox.OptionalOf[sandbox.Admitter](m.rt); ok {
		if err := a.Admit(); err != nil {
			return nil, err
		}
	}
	secretEnv, err := m.resolveSecrets(ctx, tenantID, &req)
	if err != nil {
		return nil, err
	}

	sb, how, err := m.insert(ctx, tenantID, &req)
	switch {
	case err != nil:
		return nil, err
	case how == insertedWarm:
		return m.startWarm(sb, secretEnv), nil
	case how == insertedStarted:
		return m.claimedRunning(sb), nil
	case how == insertedBefore:
		return sb, nil
	}
	m.cfg.Logger.Info("sandbox accepted", "sandbox", sb.ID, "tenant", tenantID, "image", sb.Spec.Image)
	m.goBackground(func() { m.launch(sb, false, secretEnv) })
	return sb, nil
}

// How insert made the record it returns.
const (
	insertedCold    = iota // a new PENDING record, to be created cold
	insertedWarm           // a claimed warm pool sandbox, CREATING
	insertedStarted        // a claimed warm pool sandbox, RUNNING (pool_claim.go)
	insertedBefore         // an earlier create with the same request id
)

// insert reserves room in the tenant's quota (quota.go), then claims a
// warm pool sandbox for req or, once admission control accepts it, stores
// a new CREATING record. The reservation counts the sandbox from the start,
// so a burst cannot overshoot the quota, while the store write runs
// without the tenant's lock.
func (m *Manager) insert(ctx context.Context, tenantID string, req *CreateRequest) (*sandbox.Sandbox, int, error) {
	release, err := m.reserveQuota(ctx, tenantID)
	if err != nil {
		return nil, 0, err
	}
	sb, how, err := m.insertReserved(ctx, tenantID, req)
	release(err == nil && how != insertedBefore)
	return sb, how, err
}

func (m *Manager) insertReserved(ctx context.Context, tenantID string, req *CreateRequest) (*sandbox.Sandbox, int, error) {
	if sb, how, err := m.claimWarm(ctx, tenantID, req); err != nil || sb != nil {
		return sb, how, err
	}
	// A miss: the create needs the runtime, so it passes admission control
	// (admission.go) before anything is stored.
	if err := m.admit.reserve(); err != nil {
		return nil, 0, err
	}
	sb := m.newRecord(tenantID, req, newID("sb-"))
	// Stored CREATING at once (PENDING is kept in its transitions): one
	// store write on the accept path instead of two.
	sb.State, sb.Reason = sandbox.StateCreating, reasonCreating
	sb.Transitions = append(sb.Transitions, sandbox.Transition{State: sandbox.StateCreating, Reason: reasonCreating, At: sb.CreatedAt})
	if err := m.st.CreateSandbox(ctx, sb); err != nil {
		m.admit.unreserve()
		if errors.Is(err, sandbox.ErrAlreadyExists) && req.RequestID != "" {
			// A concurrent retry with the same request id won the race.
			sb, err := m.st.GetSandboxByRequestID(ctx, tenantID, req.RequestID)
			return sb, insertedBefore, err
		}
		return nil, 0, err
	}
	m.deadlines.track(sb)
	return sb, insertedCold, nil
}

// newRecord returns the PENDING record of req with sandbox id id.
func (m *Manager) newRecord(tenantID string, req *CreateRequest, id string) *sandbox.Sandbox {
	now := m.cfg.Now()
	return &sandbox.Sandbox{
		ID: id, TenantID: tenantID, SessionID: req.SessionID, RequestID: req.RequestID,
		Spec: sandbox.Spec{ID: id, Image: req.Image, Resources: req.Resources, Network: networkOf(req)},
		Start: sandbox.StartSpec{Command: req.Command, Env: req.Env, WorkingDir: req.WorkingDir,
			User: req.User, Files: req.Files, Secrets: req.Secrets},
		Tags:        req.Tags,
		Ports:       withTokens(req.Ports),
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
	mergeSecrets(req, d.Secrets)
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
	if r.DiskBytes == 0 {
		r.DiskBytes = d.Resources.DiskBytes
	}
}

// launch creates (unless warm: a pool did) and starts the sandbox in the
// runtime, in the background, then watches its main command. Any failure
// ends the sandbox FAILED with a reason the user can act on, and leaves
// nothing in the runtime. secretEnv holds the values of sb's secrets.
func (m *Manager) launch(sb *sandbox.Sandbox, warm bool, secretEnv map[string]string) {
	ctx, cancel := context.WithTimeout(m.base, m.cfg.CreateTimeout)
	defer cancel()
	if !warm && !m.createInRuntime(ctx, sb, m.failer(sb.ID)) {
		return
	}
	if m.startInRuntime(ctx, sb, secretEnv) != nil {
		m.watchStarted(sb, false)
	}
}

// startWarm starts a claimed warm sandbox before Create returns, so that
// the caller gets it RUNNING and its first exec waits for nothing: the
// start is one agent call, cheaper than a round trip to wait for it. It
// returns the record as it stands after (RUNNING, or FAILED).
func (m *Manager) startWarm(sb *sandbox.Sandbox, secretEnv map[string]string) *sandbox.Sandbox {
	ctx, cancel := context.WithTimeout(m.base, m.cfg.CreateTimeout)
	defer cancel()
	if running := m.startInRuntime(ctx, sb, secretEnv); running != nil {
		m.goBackground(func() { m.watchStarted(sb, false) })
		return running
	}
	if cur, err := m.st.GetSandbox(ctx, "", sb.ID); err == nil {
		return cur
	}
	return sb
}

// claimedRunning does for a warm sandbox claimed RUNNING (its start was
// applied in the pool) what the transition to RUNNING does for others,
// and returns it.
func (m *Manager) claimedRunning(sb *sandbox.Sandbox) *sandbox.Sandbox {
	m.running.Store(sb.ID, sb.TenantID)
	m.notify.changed(sb.ID)
	m.cfg.Logger.Info("sandbox running", "sandbox", sb.ID)
	m.goBackground(func() { m.watchStarted(sb, true) })
	return sb
}

// idleWatchDelay is how long the watch of a started idle sandbox (no main
// command, cold or claimed from a pool) waits before it starts: its first
// step is a call to the agent (WaitMain), which would otherwise run in the
// server and the agent at the same moment as the caller's first exec, on
// the cores that exec needs. An idle sandbox's watch only notices a
// container that died on its own, so that is noticed this much later, at
// worst.
const idleWatchDelay = 100 * time.Millisecond

// watchStarted watches a started sandbox's main command (watchMain), after
// idleWatchDelay if it has none. With handOver (a warm sandbox claimed
// RUNNING, which got no start of its own) it first gives the agent the
// sandbox's deadline (backstop.go), after the same delay and for the same
// reason.
func (m *Manager) watchStarted(sb *sandbox.Sandbox, handOver bool) {
	if len(sb.Start.Command) == 0 {
		t := time.NewTimer(idleWatchDelay)
		select {
		case <-m.base.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if _, running := m.running.Load(sb.ID); !running {
			// Stopped or deleted meanwhile (a short agent tool call): its
			// stop path owns the runtime's end of it.
			return
		}
	}
	if handOver {
		m.handOverDeadline(sb)
	}
	m.watchMain(sb.ID)
}

// failer returns the function that ends sandbox id FAILED after a failed
// step of its start.
func (m *Manager) failer(id string) func(step string, err error) {
	return func(step string, err error) {
		if m.base.Err() != nil {
			return // shutting down: Recover decides on the next start
		}
		m.cfg.Logger.Warn("sandbox start failed", "sandbox", id, "step", step, "error", err)
		m.transition(context.Background(), id, notTerminal, sandbox.StateFailed,
			sandbox.ReasonStartFailed+": "+errorReason(err), nil)
	}
}

// startInRuntime applies the request's start (env, files, command) through
// the agent and records RUNNING. It returns the RUNNING record, or nil when
// the start failed (the sandbox is then FAILED and gone from the runtime)
// or the sandbox was stopped meanwhile. The secret values join the env
// only in the copy the runtime gets.
func (m *Manager) startInRuntime(ctx context.Context, sb *sandbox.Sandbox, secretEnv map[string]string) *sandbox.Sandbox {
	if err := m.rt.Start(ctx, sb.ID, m.runtimeStart(sb, secretEnv)); err != nil {
		m.cleanupRuntime(sb.ID, time.Second)
		m.failer(sb.ID)("start", err)
		return nil
	}
	running, ok, err := m.transition(ctx, sb.ID, []sandbox.State{sandbox.StateCreating}, sandbox.StateRunning, sandbox.ReasonStarted, nil)
	if err != nil || !ok {
		// Stopped (or deleted) while it was being created: the stopper
		// found nothing in the runtime to stop, so clean up here.
		m.cleanupRuntime(sb.ID, 0)
		if err == nil {
			m.notify.changed(sb.ID)
		}
		return nil
	}
	m.cfg.Logger.Info("sandbox running", "sandbox", sb.ID)
	return running
}

// createInRuntime waits for a create slot (admission.go), then creates the
// sandbox's container. It reports whether launch should go on: not when
// the create failed (fail was called) nor when the sandbox was stopped
// while it waited for a slot (nothing exists in the runtime then).
func (m *Manager) createInRuntime(ctx context.Context, sb *sandbox.Sandbox, fail func(string, error)) bool {
	if err := m.admit.acquire(ctx); err != nil {
		fail("queued", err)
		return false
	}
	t0 := time.Now()
	var err error
	defer func() { m.admit.release(time.Since(t0), false) }()
	// Stopped or deleted while it waited: nothing to create.
	if cur, gerr := m.st.GetSandbox(ctx, "", sb.ID); errors.Is(gerr, sandbox.ErrNotFound) || (gerr == nil && cur.State != sandbox.StateCreating) {
		return false
	}
	if _, err = m.rt.Create(ctx, sb.Spec); err != nil {
		fail("create", err)
		return false
	}
	return true
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
