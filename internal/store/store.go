// Package store persists sbx's records (sandboxes, sessions, tenants, API
// keys) behind one interface. sqlite/ is the embedded default, postgres/ the
// one for several server replicas; storetest/ is the conformance suite both
// pass.
package store

import (
	"context"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Store is sbx's persistence. Methods return errors of the sandbox package's
// kinds: NotFound for a missing record (reason SANDBOX_NOT_FOUND,
// SESSION_NOT_FOUND, ...), AlreadyExists for a duplicate id or request id.
// A tenantID of "" in a lookup means "any tenant" (internal use only).
type Store interface {
	// CreateSandbox inserts a new record. AlreadyExists if its id, or its
	// (TenantID, RequestID) when RequestID is set, is taken.
	CreateSandbox(ctx context.Context, sb *sandbox.Sandbox) error
	// GetSandbox returns one record; another tenant's id is NotFound.
	GetSandbox(ctx context.Context, tenantID, id string) (*sandbox.Sandbox, error)
	// GetSandboxByRequestID finds the sandbox a tenant created with requestID.
	GetSandboxByRequestID(ctx context.Context, tenantID, requestID string) (*sandbox.Sandbox, error)
	// UpdateSandbox reads the record, applies fn and writes it back in one
	// transaction; if fn returns an error nothing is written and that error
	// is returned.
	UpdateSandbox(ctx context.Context, id string, fn func(*sandbox.Sandbox) error) (*sandbox.Sandbox, error)
	// ListSandboxes returns one page of records matching f, newest first.
	ListSandboxes(ctx context.Context, f SandboxFilter) (page []*sandbox.Sandbox, nextPageToken string, err error)
	// CountActive counts a tenant's non-terminal sandboxes.
	CountActive(ctx context.Context, tenantID string) (int, error)
	// DeleteSandbox removes a record. NotFound if absent.
	DeleteSandbox(ctx context.Context, id string) error
	// PurgeSandboxes removes terminal records that ended before cutoff and
	// returns their ids.
	PurgeSandboxes(ctx context.Context, cutoff time.Time) ([]string, error)

	CreateSession(ctx context.Context, s *sandbox.Session) error
	GetSession(ctx context.Context, tenantID, id string) (*sandbox.Session, error)
	UpdateSession(ctx context.Context, id string, fn func(*sandbox.Session) error) (*sandbox.Session, error)
	// ListSessions returns open sessions (all tenants when tenantID is "").
	ListSessions(ctx context.Context, tenantID string) ([]*sandbox.Session, error)

	// Tenants and API keys (see tenants.go for the bounds).

	// CreateTenant inserts a tenant. AlreadyExists if its id is taken;
	// ResourceExhausted (TOO_MANY_TENANTS) when MaxTenants exist.
	CreateTenant(ctx context.Context, t *sandbox.Tenant) error
	// GetTenant returns one tenant. NotFound if absent.
	GetTenant(ctx context.Context, id string) (*sandbox.Tenant, error)
	// ListTenants returns one page of tenants sorted by id; pageSize is at
	// most 1000, 0 means 100.
	ListTenants(ctx context.Context, pageSize int, pageToken string) (page []*sandbox.Tenant, nextPageToken string, err error)
	// UpdateTenant reads the tenant, applies fn and writes it back in one
	// transaction (its id cannot change); fn's error aborts it.
	UpdateTenant(ctx context.Context, id string, fn func(*sandbox.Tenant) error) (*sandbox.Tenant, error)
	// CreateAPIKey inserts a key. AlreadyExists if its id or hash is taken;
	// ResourceExhausted (TOO_MANY_API_KEYS) when its tenant has
	// MaxAPIKeysPerTenant keys.
	CreateAPIKey(ctx context.Context, k *sandbox.APIKey) error
	// LookupAPIKey finds a key by the hash of its secret. NotFound if absent.
	LookupAPIKey(ctx context.Context, hash string) (*sandbox.APIKey, error)
	// GetAPIKey finds a key by its id. NotFound if absent.
	GetAPIKey(ctx context.Context, id string) (*sandbox.APIKey, error)
	// ListAPIKeys returns a tenant's keys, oldest first.
	ListAPIKeys(ctx context.Context, tenantID string) ([]*sandbox.APIKey, error)
	// DeleteAPIKey removes a key and returns what it was. NotFound if absent.
	DeleteAPIKey(ctx context.Context, id string) (*sandbox.APIKey, error)

	// Warm pools (see PoolSandbox).

	// CreatePoolSandbox records an idle pool sandbox. AlreadyExists if its
	// id is taken.
	CreatePoolSandbox(ctx context.Context, p *PoolSandbox) error
	// ListPoolSandboxes returns every idle pool sandbox, oldest first.
	ListPoolSandboxes(ctx context.Context) ([]*PoolSandbox, error)
	// DeletePoolSandbox removes an idle pool sandbox. NotFound if absent.
	DeletePoolSandbox(ctx context.Context, id string) error
	// ClaimPoolSandbox hands the idle pool sandbox sb.ID to sb's tenant: in
	// one transaction it removes the pool sandbox and inserts sb. NotFound
	// if no idle pool sandbox has that id (another server claimed it);
	// AlreadyExists as CreateSandbox. On any error nothing changes.
	ClaimPoolSandbox(ctx context.Context, sb *sandbox.Sandbox) error

	Close() error
}

// PoolSandbox is an idle sandbox of a warm pool: its container and agent
// are up (Runtime.Create is done) and no tenant has claimed it. It is not a
// sandbox record, so no tenant lists or gets it and no quota counts it;
// ClaimPoolSandbox turns it into one, keeping its id (the container's
// hostname).
type PoolSandbox struct {
	ID string
	// Pool is the key of the pool that made it.
	Pool      string
	Spec      sandbox.Spec
	CreatedAt time.Time
}

// SandboxFilter selects sandboxes for ListSandboxes. Empty fields match all.
type SandboxFilter struct {
	// TenantID; "" matches every tenant (internal use).
	TenantID  string
	SessionID string
	// Tags must all be present on a sandbox (AND).
	Tags []string
	// States to include; empty means every non-terminal state, plus the
	// terminal ones when IncludeTerminal is set.
	States          []sandbox.State
	IncludeTerminal bool
	// PageSize is at most 1000; 0 means 100.
	PageSize  int
	PageToken string
}
