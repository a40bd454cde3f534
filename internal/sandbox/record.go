package sandbox

import "time"

// Sandbox is the server's record of one sandbox: what was asked for (intent)
// and what was observed (status). Stores persist it; the lifecycle manager
// owns its state changes.
type Sandbox struct {
	ID        string
	TenantID  string
	SessionID string
	// RequestID is the caller's idempotency key for Create; unique per tenant.
	RequestID string

	// Intent.
	Spec        Spec
	Start       StartSpec
	Tags        []string
	MaxLifetime time.Duration
	// Ports are the sandbox's TCP ports published through sbx's proxy, set
	// at create and changed by ExposePort / UnexposePort.
	Ports []Port `json:",omitempty"`

	// Status.
	State       State
	Reason      string
	Exit        *ExitStatus
	CreatedAt   time.Time
	StartedAt   time.Time // zero until RUNNING
	EndedAt     time.Time // zero until terminal
	ExpiresAt   time.Time // CreatedAt + MaxLifetime
	Transitions []Transition
}

// Session groups sandboxes that share defaults and end together.
type Session struct {
	ID       string
	TenantID string
	Defaults SessionDefaults
	// Lease is how long the session lives without a heartbeat.
	Lease         time.Duration
	CreatedAt     time.Time
	LastHeartbeat time.Time
	// ClosedAt is set once the session was closed (by its client or its lease).
	ClosedAt    time.Time
	CloseReason string
}

// Expired reports whether the session's lease ran out at now.
func (s *Session) Expired(now time.Time) bool {
	return s.ClosedAt.IsZero() && s.Lease > 0 && now.Sub(s.LastHeartbeat) > s.Lease
}

// SessionDefaults are the values a session's sandboxes get when their own
// request leaves them unset. Tags and Env merge; the request's values win.
type SessionDefaults struct {
	Image       string
	MaxLifetime time.Duration
	Tags        []string
	Env         map[string]string
	Resources   Resources
	// Network, when set, is the policy of sandboxes whose request sets none
	// (the whole policy, not merged field by field).
	Network *NetworkPolicy `json:",omitempty"`
	// Secrets merge with the request's; for one env var the request's win.
	Secrets []SecretRef `json:",omitempty"`
}

// Tenant owns sandboxes and sessions; API keys belong to one tenant.
type Tenant struct {
	ID   string
	Name string
	// MaxSandboxes is the quota of concurrent non-terminal sandboxes; 0 is the server default.
	MaxSandboxes int
	// CreatedAt is zero for tenants made before it was recorded.
	CreatedAt time.Time
}

// APIKey is a stored key: only its hash, never the key itself.
type APIKey struct {
	// ID is a short public identifier (shown in logs, used to revoke).
	ID       string
	TenantID string
	// Hash is the SHA-256 of the secret key, hex-encoded.
	Hash string
	// Label is the operator's note on what the key is for (may be empty).
	Label     string
	CreatedAt time.Time
}

// Port is a TCP port of a sandbox that sbx's proxy publishes over HTTP and
// WebSocket (and raw TCP through port-forward).
type Port struct {
	// Port is the TCP port inside the sandbox (1-65535).
	Port int
	// Public ports are reachable without an API key, at a URL that holds
	// Token; private ones (the default) need the owning tenant's API key.
	Public bool `json:",omitempty"`
	// Token is set by the server for public ports: 128 random bits, base32.
	// It is what makes a public URL unguessable; never taken from a user.
	Token string `json:",omitempty"`
}
