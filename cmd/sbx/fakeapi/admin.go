package fakeapi

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
)

// fakeAdmin implements AdminService in memory. The caller is the admin
// tenant "local" (which has key "key-local"); a tenant named "denied" is
// refused with PERMISSION_DENIED (ADMIN_REQUIRED), as the real server
// refuses non-admins. Keys are "sbx_fake_<n>"; the fake's auth accepts
// only Key, so they are for printing, not for calling.
type fakeAdmin struct {
	sbxv1connect.UnimplementedAdminServiceHandler

	mu      sync.Mutex
	next    int
	tenants map[string]*sbxv1.Tenant
	keys    map[string]*sbxv1.APIKeyInfo
}

func newFakeAdmin() *fakeAdmin {
	return &fakeAdmin{
		tenants: map[string]*sbxv1.Tenant{"local": {Id: "local", Name: "local", CreatedAt: timestamppb.Now()}},
		keys:    map[string]*sbxv1.APIKeyInfo{"key-local": {Id: "key-local", TenantId: "local", CreatedAt: timestamppb.Now()}},
	}
}

// issue makes a key for tenant; the caller holds mu.
func (a *fakeAdmin) issue(tenant, label string) (*sbxv1.APIKeyInfo, string) {
	a.next++
	k := &sbxv1.APIKeyInfo{Id: fmt.Sprintf("key-%d", a.next), TenantId: tenant, Label: label, CreatedAt: timestamppb.Now()}
	a.keys[k.Id] = k
	return k, fmt.Sprintf("sbx_fake_%d", a.next)
}

func (a *fakeAdmin) CreateTenant(_ context.Context, req *connect.Request[sbxv1.CreateTenantRequest]) (*connect.Response[sbxv1.CreateTenantResponse], error) {
	if req.Msg.GetName() == "denied" {
		return nil, fakeErr(connect.CodePermissionDenied, "ADMIN_REQUIRED", "CreateTenant: only admin tenants may manage tenants; ask the server's operator (sbx serve --admin TENANT_ID)", 0)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.next++
	t := &sbxv1.Tenant{Id: fmt.Sprintf("tn-%d", a.next), Name: req.Msg.GetName(), MaxSandboxes: req.Msg.GetMaxSandboxes(), CreatedAt: timestamppb.Now()}
	a.tenants[t.Id] = t
	k, secret := a.issue(t.Id, "")
	return connect.NewResponse(&sbxv1.CreateTenantResponse{Tenant: t, Key: k, ApiKey: secret}), nil
}

func (a *fakeAdmin) ListTenants(_ context.Context, _ *connect.Request[sbxv1.ListTenantsRequest]) (*connect.Response[sbxv1.ListTenantsResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	resp := &sbxv1.ListTenantsResponse{}
	for _, t := range a.tenants {
		resp.Tenants = append(resp.Tenants, t)
	}
	sort.Slice(resp.Tenants, func(i, j int) bool { return resp.Tenants[i].Id < resp.Tenants[j].Id })
	return connect.NewResponse(resp), nil
}

func (a *fakeAdmin) tenant(id string) (*sbxv1.Tenant, error) {
	if id == "" {
		id = "local"
	}
	t, ok := a.tenants[id]
	if !ok {
		return nil, fakeErr(connect.CodeNotFound, "TENANT_NOT_FOUND", fmt.Sprintf("tenant %q not found: create it first", id), 0)
	}
	return t, nil
}

func (a *fakeAdmin) GetTenant(_ context.Context, req *connect.Request[sbxv1.GetTenantRequest]) (*connect.Response[sbxv1.GetTenantResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, err := a.tenant(req.Msg.GetId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.GetTenantResponse{Tenant: t}), nil
}

func (a *fakeAdmin) UpdateTenant(_ context.Context, req *connect.Request[sbxv1.UpdateTenantRequest]) (*connect.Response[sbxv1.UpdateTenantResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, err := a.tenant(req.Msg.GetId())
	if err != nil {
		return nil, err
	}
	if req.Msg.MaxSandboxes != nil {
		t.MaxSandboxes = req.Msg.GetMaxSandboxes()
	}
	return connect.NewResponse(&sbxv1.UpdateTenantResponse{Tenant: t}), nil
}

func (a *fakeAdmin) CreateAPIKey(_ context.Context, req *connect.Request[sbxv1.CreateAPIKeyRequest]) (*connect.Response[sbxv1.CreateAPIKeyResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, err := a.tenant(req.Msg.GetTenantId())
	if err != nil {
		return nil, err
	}
	k, secret := a.issue(t.Id, req.Msg.GetLabel())
	return connect.NewResponse(&sbxv1.CreateAPIKeyResponse{Key: k, ApiKey: secret}), nil
}

func (a *fakeAdmin) ListAPIKeys(_ context.Context, req *connect.Request[sbxv1.ListAPIKeysRequest]) (*connect.Response[sbxv1.ListAPIKeysResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, err := a.tenant(req.Msg.GetTenantId())
	if err != nil {
		return nil, err
	}
	resp := &sbxv1.ListAPIKeysResponse{}
	for _, k := range a.keys {
		if k.TenantId == t.Id {
			resp.Keys = append(resp.Keys, k)
		}
	}
	sort.Slice(resp.Keys, func(i, j int) bool { return resp.Keys[i].Id < resp.Keys[j].Id })
	return connect.NewResponse(resp), nil
}

func (a *fakeAdmin) RevokeAPIKey(_ context.Context, req *connect.Request[sbxv1.RevokeAPIKeyRequest]) (*connect.Response[sbxv1.RevokeAPIKeyResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.keys[req.Msg.GetKeyId()]; !ok {
		return nil, fakeErr(connect.CodeNotFound, "API_KEY_NOT_FOUND", fmt.Sprintf("API key %q not found", req.Msg.GetKeyId()), 0)
	}
	delete(a.keys, req.Msg.GetKeyId())
	return connect.NewResponse(&sbxv1.RevokeAPIKeyResponse{}), nil
}
