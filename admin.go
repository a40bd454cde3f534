package sbx

import (
	"context"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// Tenant administration: the server's AdminService. Tenant calls are for
// admin tenants (`sbx serve --admin TENANT_ID`; the local tenant of
// `sbx serve --local` is always one); others fail with ErrPermissionDenied
// (reason ADMIN_REQUIRED). Any tenant may list, create and revoke its own
// API keys.

// Tenant owns sandboxes, sessions, secrets and API keys.
type Tenant struct {
	ID   string
	Name string
	// MaxSandboxes is the quota of concurrent sandboxes; 0 is the server's
	// default.
	MaxSandboxes int
	// CreatedAt is zero for tenants made before the server recorded it.
	CreatedAt time.Time
}

// APIKeyInfo describes an API key without its secret.
type APIKeyInfo struct {
	// ID names the key (it is not secret): pass it to RevokeAPIKey.
	ID        string
	TenantID  string
	Label     string
	CreatedAt time.Time
}

// NewAPIKey is a key just issued. Secret is shown this once: the server
// keeps only its hash and cannot return it again.
type NewAPIKey struct {
	APIKeyInfo
	Secret string
}

// maxTenantPages bounds ListTenants' walk: 10000 tenants (the server's
// bound) in pages of 1000, plus slack.
const maxTenantPages = 20

// CreateTenant makes a tenant named name (1-128 of [A-Za-z0-9_.-]) with a
// quota of maxSandboxes concurrent sandboxes (0: the server's default),
// and its first API key.
func (c *Client) CreateTenant(ctx context.Context, name string, maxSandboxes int) (Tenant, NewAPIKey, error) {
	q := int32(maxSandboxes)
	if int(q) != maxSandboxes {
		return Tenant{}, NewAPIKey{}, errorf(ErrInvalidArgument, "INVALID_ARGUMENT", "max sandboxes %d is out of range", maxSandboxes)
	}
	resp, err := c.admin.CreateTenant(ctx, connect.NewRequest(&sbxv1.CreateTenantRequest{Name: name, MaxSandboxes: &q}))
	if err != nil {
		return Tenant{}, NewAPIKey{}, c.fromWire(err)
	}
	key := NewAPIKey{APIKeyInfo: apiKeyFromWire(resp.Msg.GetKey()), Secret: resp.Msg.GetApiKey()}
	return tenantFromWire(resp.Msg.GetTenant()), key, nil
}

// ListTenants returns every tenant, sorted by id.
func (c *Client) ListTenants(ctx context.Context) ([]Tenant, error) {
	var out []Tenant
	tok := ""
	for range maxTenantPages {
		resp, err := c.admin.ListTenants(ctx, connect.NewRequest(&sbxv1.ListTenantsRequest{PageSize: 1000, PageToken: tok}))
		if err != nil {
			return nil, c.fromWire(err)
		}
		for _, t := range resp.Msg.GetTenants() {
			out = append(out, tenantFromWire(t))
		}
		if tok = resp.Msg.GetNextPageToken(); tok == "" {
			return out, nil
		}
	}
	return out, nil
}

// GetTenant returns one tenant; "" is the caller's own.
func (c *Client) GetTenant(ctx context.Context, id string) (Tenant, error) {
	resp, err := c.admin.GetTenant(ctx, connect.NewRequest(&sbxv1.GetTenantRequest{Id: id}))
	if err != nil {
		return Tenant{}, c.fromWire(err)
	}
	return tenantFromWire(resp.Msg.GetTenant()), nil
}

// SetTenantQuota sets a tenant's quota of concurrent sandboxes
// (0..100000; 0 is the server's default). Sandboxes over a lowered quota
// keep running; creates are refused (QUOTA_EXCEEDED) until the count falls below it.
func (c *Client) SetTenantQuota(ctx context.Context, id string, maxSandboxes int) (Tenant, error) {
	q := int32(maxSandboxes)
	if int(q) != maxSandboxes {
		return Tenant{}, errorf(ErrInvalidArgument, "INVALID_ARGUMENT", "max sandboxes %d is out of range", maxSandboxes)
	}
	resp, err := c.admin.UpdateTenant(ctx, connect.NewRequest(&sbxv1.UpdateTenantRequest{Id: id, MaxSandboxes: &q}))
	if err != nil {
		return Tenant{}, c.fromWire(err)
	}
	return tenantFromWire(resp.Msg.GetTenant()), nil
}

// CreateAPIKey issues another API key for a tenant ("" is the caller's
// own), labelled label (at most 128 printable characters; may be empty).
// A tenant has at most 100 keys.
func (c *Client) CreateAPIKey(ctx context.Context, tenantID, label string) (NewAPIKey, error) {
	resp, err := c.admin.CreateAPIKey(ctx, connect.NewRequest(&sbxv1.CreateAPIKeyRequest{TenantId: tenantID, Label: label}))
	if err != nil {
		return NewAPIKey{}, c.fromWire(err)
	}
	return NewAPIKey{APIKeyInfo: apiKeyFromWire(resp.Msg.GetKey()), Secret: resp.Msg.GetApiKey()}, nil
}

// ListAPIKeys returns a tenant's keys ("" is the caller's own), oldest
// first, without their secrets.
func (c *Client) ListAPIKeys(ctx context.Context, tenantID string) ([]APIKeyInfo, error) {
	resp, err := c.admin.ListAPIKeys(ctx, connect.NewRequest(&sbxv1.ListAPIKeysRequest{TenantId: tenantID}))
	if err != nil {
		return nil, c.fromWire(err)
	}
	out := make([]APIKeyInfo, 0, len(resp.Msg.GetKeys()))
	for _, k := range resp.Msg.GetKeys() {
		out = append(out, apiKeyFromWire(k))
	}
	return out, nil
}

// RevokeAPIKey deletes a key by its id. It fails at once on the server
// that revoked it and within a minute on other replicas sharing its store.
// The last key of an admin tenant cannot be revoked (ErrFailedPrecondition).
func (c *Client) RevokeAPIKey(ctx context.Context, keyID string) error {
	if _, err := c.admin.RevokeAPIKey(ctx, connect.NewRequest(&sbxv1.RevokeAPIKeyRequest{KeyId: keyID})); err != nil {
		return c.fromWire(err)
	}
	return nil
}

func tenantFromWire(t *sbxv1.Tenant) Tenant {
	return Tenant{ID: t.GetId(), Name: t.GetName(), MaxSandboxes: int(t.GetMaxSandboxes()), CreatedAt: timeFromWire(t.GetCreatedAt())}
}

func apiKeyFromWire(k *sbxv1.APIKeyInfo) APIKeyInfo {
	return APIKeyInfo{ID: k.GetId(), TenantID: k.GetTenantId(), Label: k.GetLabel(), CreatedAt: timeFromWire(k.GetCreatedAt())}
}
