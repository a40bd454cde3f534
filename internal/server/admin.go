package server

import (
	"context"
	"regexp"
	"unicode"
	"unicode/utf8"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// Bounds of the AdminService's fields. The counts of tenants and keys are
// bounded by the store (store.MaxTenants, store.MaxAPIKeysPerTenant).
const (
	// MaxTenantQuota bounds a tenant's max_sandboxes; it is the range the
	// server's maxSandboxesPerTenant accepts too.
	MaxTenantQuota = 100_000
	// maxLabelLen bounds an API key's label, in bytes.
	maxLabelLen = 128
)

// idRE is what tenant names and ids, and key ids, look like: the tenant
// ids the server's config accepts (imageAdmins, admins).
var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// adminService implements sbxv1connect.AdminServiceHandler: tenants and
// their API keys. Tenant calls are for admins; key calls also for a tenant
// on its own keys (to rotate them).
type adminService struct {
	*deps
	st     store.Store
	auth   *auth.Authenticator
	admins map[string]bool
}

var _ sbxv1connect.AdminServiceHandler = (*adminService)(nil)

func (s *adminService) isAdmin(ctx context.Context) bool { return s.admins[tenant(ctx)] }

// requireAdmin refuses callers that are not admin tenants.
func (s *adminService) requireAdmin(ctx context.Context, what string) error {
	if s.isAdmin(ctx) {
		return nil
	}
	return sandbox.Errorf(sandbox.ErrPermissionDenied, sandbox.ReasonAdminRequired,
		"%s: only admin tenants may manage tenants and other tenants' keys; ask the server's operator, who makes a tenant an admin with `sbx serve --admin TENANT_ID` (or admins in the config file)", what)
}

// keyTenant returns the tenant whose keys a key call names: the caller's
// own when id is empty; another one only for admins, and only if it
// exists.
func (s *adminService) keyTenant(ctx context.Context, id, what string) (string, error) {
	if id == "" || id == tenant(ctx) {
		return tenant(ctx), nil
	}
	if err := validateID("tenant_id", id); err != nil {
		return "", err
	}
	if err := s.requireAdmin(ctx, what+" of another tenant"); err != nil {
		return "", err
	}
	if _, err := s.st.GetTenant(ctx, id); err != nil {
		return "", err
	}
	return id, nil
}

func validateID(field, v string) error {
	if !idRE.MatchString(v) {
		return invalidf("%s %.140q must be 1-128 of [A-Za-z0-9_.-], starting with a letter or digit", field, v)
	}
	return nil
}

func validateQuota(q int32) error {
	if q < 0 || q > MaxTenantQuota {
		return invalidf("max_sandboxes %d is out of range 0..%d (0: the server's default quota)", q, MaxTenantQuota)
	}
	return nil
}

func validateLabel(l string) error {
	if len(l) > maxLabelLen {
		return invalidf("label is %d bytes: at most %d", len(l), maxLabelLen)
	}
	if !utf8.ValidString(l) {
		return invalidf("label is not valid UTF-8")
	}
	for _, r := range l {
		if !unicode.IsPrint(r) {
			return invalidf("label %q holds a control or non-printing character: use printable text", l)
		}
	}
	return nil
}

// CreateTenant implements AdminService.CreateTenant.
func (s *adminService) CreateTenant(ctx context.Context, req *connect.Request[sbxv1.CreateTenantRequest]) (*connect.Response[sbxv1.CreateTenantResponse], error) {
	if err := s.requireAdmin(ctx, "CreateTenant"); err != nil {
		return nil, err
	}
	if err := validateID("name", req.Msg.GetName()); err != nil {
		return nil, err
	}
	if err := validateQuota(req.Msg.GetMaxSandboxes()); err != nil {
		return nil, err
	}
	t := &sandbox.Tenant{Name: req.Msg.GetName(), MaxSandboxes: int(req.Msg.GetMaxSandboxes())}
	k, secret, err := auth.CreateTenant(ctx, s.st, t, "")
	if err != nil {
		return nil, err
	}
	s.log.Info("admin: created tenant", "by", tenant(ctx), "tenant", t.ID, "name", t.Name, "key", k.ID)
	return connect.NewResponse(&sbxv1.CreateTenantResponse{Tenant: tenantToWire(t), Key: keyToWire(k), ApiKey: secret}), nil
}

// ListTenants implements AdminService.ListTenants.
func (s *adminService) ListTenants(ctx context.Context, req *connect.Request[sbxv1.ListTenantsRequest]) (*connect.Response[sbxv1.ListTenantsResponse], error) {
	if err := s.requireAdmin(ctx, "ListTenants"); err != nil {
		return nil, err
	}
	page, next, err := s.st.ListTenants(ctx, int(req.Msg.GetPageSize()), req.Msg.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &sbxv1.ListTenantsResponse{NextPageToken: next, Tenants: make([]*sbxv1.Tenant, 0, len(page))}
	for _, t := range page {
		resp.Tenants = append(resp.Tenants, tenantToWire(t))
	}
	return connect.NewResponse(resp), nil
}

// GetTenant implements AdminService.GetTenant; a tenant may get itself.
func (s *adminService) GetTenant(ctx context.Context, req *connect.Request[sbxv1.GetTenantRequest]) (*connect.Response[sbxv1.GetTenantResponse], error) {
	id := req.Msg.GetId()
	if id == "" {
		id = tenant(ctx)
	}
	if err := validateID("id", id); err != nil {
		return nil, err
	}
	if id != tenant(ctx) {
		if err := s.requireAdmin(ctx, "GetTenant of another tenant"); err != nil {
			return nil, err
		}
	}
	t, err := s.st.GetTenant(ctx, id)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.GetTenantResponse{Tenant: tenantToWire(t)}), nil
}

// UpdateTenant implements AdminService.UpdateTenant.
func (s *adminService) UpdateTenant(ctx context.Context, req *connect.Request[sbxv1.UpdateTenantRequest]) (*connect.Response[sbxv1.UpdateTenantResponse], error) {
	if err := s.requireAdmin(ctx, "UpdateTenant"); err != nil {
		return nil, err
	}
	if err := validateID("id", req.Msg.GetId()); err != nil {
		return nil, err
	}
	if err := validateQuota(req.Msg.GetMaxSandboxes()); err != nil {
		return nil, err
	}
	t, err := s.st.UpdateTenant(ctx, req.Msg.GetId(), func(t *sandbox.Tenant) error {
		if req.Msg.MaxSandboxes != nil {
			t.MaxSandboxes = int(req.Msg.GetMaxSandboxes())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("admin: updated tenant", "by", tenant(ctx), "tenant", t.ID, "max_sandboxes", t.MaxSandboxes)
	return connect.NewResponse(&sbxv1.UpdateTenantResponse{Tenant: tenantToWire(t)}), nil
}

// CreateAPIKey implements AdminService.CreateAPIKey.
func (s *adminService) CreateAPIKey(ctx context.Context, req *connect.Request[sbxv1.CreateAPIKeyRequest]) (*connect.Response[sbxv1.CreateAPIKeyResponse], error) {
	if err := validateLabel(req.Msg.GetLabel()); err != nil {
		return nil, err
	}
	tid, err := s.keyTenant(ctx, req.Msg.GetTenantId(), "CreateAPIKey")
	if err != nil {
		return nil, err
	}
	k, secret, err := auth.IssueKey(ctx, s.st, tid, req.Msg.GetLabel())
	if err != nil {
		return nil, err
	}
	s.log.Info("admin: created API key", "by", tenant(ctx), "tenant", tid, "key", k.ID)
	return connect.NewResponse(&sbxv1.CreateAPIKeyResponse{Key: keyToWire(k), ApiKey: secret}), nil
}

// ListAPIKeys implements AdminService.ListAPIKeys.
func (s *adminService) ListAPIKeys(ctx context.Context, req *connect.Request[sbxv1.ListAPIKeysRequest]) (*connect.Response[sbxv1.ListAPIKeysResponse], error) {
	tid, err := s.keyTenant(ctx, req.Msg.GetTenantId(), "ListAPIKeys")
	if err != nil {
		return nil, err
	}
	keys, err := s.st.ListAPIKeys(ctx, tid)
	if err != nil {
		return nil, err
	}
	resp := &sbxv1.ListAPIKeysResponse{Keys: make([]*sbxv1.APIKeyInfo, 0, len(keys))}
	for _, k := range keys {
		resp.Keys = append(resp.Keys, keyToWire(k))
	}
	return connect.NewResponse(resp), nil
}

// RevokeAPIKey implements AdminService.RevokeAPIKey. Another tenant's key
// is NotFound for a non-admin, as if it did not exist.
func (s *adminService) RevokeAPIKey(ctx context.Context, req *connect.Request[sbxv1.RevokeAPIKeyRequest]) (*connect.Response[sbxv1.RevokeAPIKeyResponse], error) {
	id := req.Msg.GetKeyId()
	if err := validateID("key_id", id); err != nil {
		return nil, err
	}
	k, err := s.st.GetAPIKey(ctx, id)
	if err != nil {
		return nil, err
	}
	if k.TenantID != tenant(ctx) && !s.isAdmin(ctx) {
		return nil, sandbox.NotFound(sandbox.ReasonAPIKeyNotFound, "API key %q not found: list your keys with `sbx admin key ls`", id)
	}
	if s.admins[k.TenantID] {
		// An admin tenant keeps at least one key, so that no revoke
		// locks the operator out.
		keys, err := s.st.ListAPIKeys(ctx, k.TenantID)
		if err != nil {
			return nil, err
		}
		if len(keys) <= 1 {
			return nil, sandbox.FailedPrecondition(sandbox.ReasonLastAdminKey,
				"API key %q is the last key of admin tenant %q: create another (`sbx admin key create %s`) before revoking it", id, k.TenantID, k.TenantID)
		}
	}
	if _, err := s.auth.Revoke(ctx, id); err != nil {
		return nil, err
	}
	s.log.Info("admin: revoked API key", "by", tenant(ctx), "tenant", k.TenantID, "key", id)
	return connect.NewResponse(&sbxv1.RevokeAPIKeyResponse{}), nil
}

func tenantToWire(t *sandbox.Tenant) *sbxv1.Tenant {
	return &sbxv1.Tenant{Id: t.ID, Name: t.Name, MaxSandboxes: int32(t.MaxSandboxes), CreatedAt: ts(t.CreatedAt)}
}

// keyToWire never carries the hash.
func keyToWire(k *sandbox.APIKey) *sbxv1.APIKeyInfo {
	return &sbxv1.APIKeyInfo{Id: k.ID, TenantId: k.TenantID, Label: k.Label, CreatedAt: ts(k.CreatedAt)}
}
