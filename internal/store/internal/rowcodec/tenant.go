package rowcodec

import (
	"encoding/base64"
	"strings"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// TenantPage is a checked ListTenants request: the page size to return and
// the id the page starts after ("" for the first page).
type TenantPage struct {
	Size  int
	After string
}

// CheckTenantPage validates ListTenants' page size and token.
func CheckTenantPage(size int, token string) (TenantPage, error) {
	switch {
	case size < 0 || size > 1000:
		return TenantPage{}, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "page size %d is out of range 0..1000 (0 means 100)", size)
	case size == 0:
		size = 100
	}
	p := TenantPage{Size: size}
	if token == "" {
		return p, nil
	}
	bad := sandbox.InvalidArgument(sandbox.ReasonInvalidPageToken,
		"page token %.40q is not one this server issued: pass the next_page_token of the previous page, or none to start again", token)
	if len(token) > maxPageToken {
		return TenantPage{}, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	id, ok := strings.CutPrefix(string(raw), "t1:")
	if err != nil || !ok || id == "" {
		return TenantPage{}, bad
	}
	p.After = id
	return p, nil
}

// TenantsPage trims rows (read with limit Size+1) to one page and returns
// the token of the next page ("" on the last).
func TenantsPage(p TenantPage, rows []*sandbox.Tenant) ([]*sandbox.Tenant, string) {
	if len(rows) <= p.Size {
		return rows, ""
	}
	rows = rows[:p.Size]
	return rows, base64.RawURLEncoding.EncodeToString([]byte("t1:" + rows[len(rows)-1].ID))
}

// TooManyTenants is ResourceExhausted for a store full of tenants.
func TooManyTenants() error {
	return sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonTooManyTenants,
		"the server already has %d tenants, the most it allows: reuse an existing tenant", store.MaxTenants)
}

// TooManyAPIKeys is ResourceExhausted for a tenant with all its keys.
func TooManyAPIKeys(tenantID string) error {
	return sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonTooManyAPIKeys,
		"tenant %q already has %d API keys, the most allowed: revoke unused ones (`sbx admin key ls`, `sbx admin key revoke`) first", tenantID, store.MaxAPIKeysPerTenant)
}

// APIKeyIDNotFound is NotFound for a key id.
func APIKeyIDNotFound(id string) error {
	return sandbox.NotFound(sandbox.ReasonAPIKeyNotFound, "API key %q not found: list the tenant's keys with `sbx admin key ls TENANT`", id)
}

// CheckTenantImmutable refuses an UpdateTenant fn that changed the id.
func CheckTenantImmutable(oldID, newID string) error {
	if oldID != newID {
		return sandbox.Internal("update of tenant %q changed its id to %q", oldID, newID)
	}
	return nil
}
