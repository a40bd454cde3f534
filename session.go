package sbx

import (
	"context"
	"sync"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// SandboxDefaults are what a session's sandboxes get where their own
// options leave a field unset. Tags and Env merge; a sandbox's own win.
type SandboxDefaults struct {
	Image string
	// Lifetime of each sandbox; zero means the server's default.
	Lifetime  time.Duration
	Tags      []string
	Env       map[string]string
	Resources Resources
	// Network, when set, is the policy of sandboxes that set none.
	Network *Network
	// Secrets are injected into every sandbox of the session, merged with
	// its own (for one env var a sandbox's own win).
	Secrets []Secret
}

// SessionOption configures NewSession.
type SessionOption func(*sessionConfig)

type sessionConfig struct{ lease time.Duration }

// Lease sets how long the server keeps the session without a heartbeat
// (whole seconds; 0 means the server's default of 60 s, at most 1 h).
// The Session heartbeats at a third of it.
func Lease(d time.Duration) SessionOption { return func(c *sessionConfig) { c.lease = d } }

// Session groups sandboxes that share defaults and end together. It
// heartbeats in the background while open; if the client process dies the
// server closes the session after its lease and stops its sandboxes. Close
// stops them at once.
type Session struct {
	c     *Client
	id    string
	lease time.Duration

	mu       sync.Mutex
	closed   bool
	closeErr error // why the session closed without Close (e.g. lease expired)
	stop     chan struct{}
	hbDone   chan struct{}
}

// NewSession opens a session on the server with the given defaults and
// starts heartbeating.
func (c *Client) NewSession(ctx context.Context, defaults SandboxDefaults, opts ...SessionOption) (*Session, error) {
	d := &sbxv1.SessionDefaults{
		Image:     defaults.Image,
		Tags:      defaults.Tags,
		Env:       defaults.Env,
		Resources: resourcesToWire(defaults.Resources),
		Network:   networkToWire(defaults.Network),
		Secrets:   secretsToWire(defaults.Secrets),
	}
	if defaults.Lifetime < 0 {
		return nil, errorf(ErrInvalidArgument, "LIFETIME_OUT_OF_RANGE", "default lifetime %s is negative: give a positive duration", defaults.Lifetime)
	}
	if defaults.Lifetime > 0 {
		secs := int64((defaults.Lifetime + time.Second - 1) / time.Second)
		d.MaxLifetimeSeconds = &secs
	}
	var cfg sessionConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.lease < 0 {
		return nil, errorf(ErrInvalidArgument, "INVALID_ARGUMENT", "lease %s is negative: give a positive duration", cfg.lease)
	}
	req := &sbxv1.CreateSessionRequest{Defaults: d, LeaseSeconds: int64((cfg.lease + time.Second - 1) / time.Second)}
	resp, err := c.sessions.Create(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, c.fromWire(err)
	}
	w := resp.Msg.GetSession()
	s := &Session{
		c: c, id: w.GetId(), lease: time.Duration(w.GetLeaseSeconds()) * time.Second,
		stop: make(chan struct{}), hbDone: make(chan struct{}),
	}
	if s.lease <= 0 {
		s.lease = 60 * time.Second
	}
	go s.heartbeat()
	return s, nil
}

// ID returns the session id.
func (s *Session) ID() string { return s.id }

// Sandbox returns a sandbox of this session that is created on first use
// (Start, Wait, Exec, file calls, ...), with the session's defaults under
// opts. It makes no call itself.
func (s *Session) Sandbox(opts ...RunOption) *Sandbox {
	sb := &Sandbox{c: s.c, sess: s}
	req, err := createRequest(opts)
	if err != nil {
		req = nil
		sb.createErr = err
	} else {
		req.SessionId = s.id
	}
	sb.pending = req
	return sb
}

// Run creates a sandbox of this session now; see Client.Run.
func (s *Session) Run(ctx context.Context, opts ...RunOption) (*Sandbox, error) {
	sb := s.Sandbox(opts...)
	if err := sb.Start(ctx); err != nil {
		return nil, err
	}
	return sb, nil
}

// usable returns an error once the session is closed.
func (s *Session) usable() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		if s.closeErr != nil {
			return s.closeErr
		}
		return errorf(ErrFailedPrecondition, "SESSION_CLOSED", "session %s is closed: open a new one", s.id)
	}
	return nil
}

// Err returns why the server closed the session (its lease ran out while
// heartbeats failed), or nil while it is open or after Close.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeErr
}

func (s *Session) heartbeat() {
	defer close(s.hbDone)
	interval := max(s.lease/3, time.Second)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		_, err := s.c.sessions.Heartbeat(ctx, connect.NewRequest(&sbxv1.HeartbeatSessionRequest{Id: s.id}))
		cancel()
		if err == nil {
			continue
		}
		err = s.c.fromWire(err)
		// A transient failure is retried at the next tick; a session the
		// server has closed or forgotten never comes back.
		if r := ReasonOf(err); r == "SESSION_CLOSED" || r == "SESSION_NOT_FOUND" {
			s.mu.Lock()
			s.closed, s.closeErr = true, err
			s.mu.Unlock()
			return
		}
	}
}

// Close stops the heartbeat and closes the session on the server, which
// stops every sandbox of it. Sandboxes not created yet never will be.
// Closing twice is harmless.
func (s *Session) Close(ctx context.Context) error {
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.closed = true
	s.mu.Unlock()
	<-s.hbDone
	_, err := s.c.sessions.Close(ctx, connect.NewRequest(&sbxv1.CloseSessionRequest{Id: s.id}))
	return s.c.fromWire(err)
}
