package server_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/lifecycle/lifecycletest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/server"
	"github.com/sbx-run/sbx/internal/store"
)

// adminEnv is a server with the AdminService: tenant a is its admin, b is
// not.
type adminEnv struct {
	*env
	tenantA, tenantB string
}

func newAdminEnv(t *testing.T) *adminEnv {
	t.Helper()
	ctx := context.Background()
	e := &env{rt: lifecycletest.NewRuntime()}
	m, st := startManager(t, e.rt, lifecycle.Config{Linger: time.Hour, SweepInterval: 10 * time.Millisecond})
	e.st = st
	a, keyA, err := auth.NewTenant(ctx, st, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, keyB, err := auth.NewTenant(ctx, st, "b")
	if err != nil {
		t.Fatal(err)
	}
	e.keyA, e.keyB = keyA, keyB
	h := server.New(server.Config{Manager: m, Auth: auth.NewAuthenticator(st), Logger: quietLog, Store: st, Admins: []string{a.ID}})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = server.NewHTTPServer("", h).Protocols
	srv.Start()
	t.Cleanup(srv.Close)
	e.url = srv.URL
	e.h2c = srv.Client()
	return &adminEnv{env: e, tenantA: a.ID, tenantB: b.ID}
}

func (e *adminEnv) admin(key string) sbxv1connect.AdminServiceClient {
	return sbxv1connect.NewAdminServiceClient(e.httpClient(key), e.url)
}

func req[T any](m *T) *connect.Request[T] { return connect.NewRequest(m) }

func i32(v int32) *int32 { return &v }

func TestAdminRefusesNonAdmins(t *testing.T) {
	e := newAdminEnv(t)
	ctx := context.Background()
	b := e.admin(e.keyB)
	aKeys, err := e.admin(e.keyA).ListAPIKeys(ctx, req(&sbxv1.ListAPIKeysRequest{}))
	if err != nil || len(aKeys.Msg.Keys) != 1 {
		t.Fatalf("admin's own keys: %v %v", aKeys, err)
	}
	calls := map[string]func() error{
		"CreateTenant": func() error {
			_, err := b.CreateTenant(ctx, req(&sbxv1.CreateTenantRequest{Name: "x"}))
			return err
		},
		"ListTenants": func() error { _, err := b.ListTenants(ctx, req(&sbxv1.ListTenantsRequest{})); return err },
		"UpdateTenant": func() error {
			_, err := b.UpdateTenant(ctx, req(&sbxv1.UpdateTenantRequest{Id: e.tenantB, MaxSandboxes: i32(1000)}))
			return err
		},
		"GetTenant of another": func() error { _, err := b.GetTenant(ctx, req(&sbxv1.GetTenantRequest{Id: e.tenantA})); return err },
		"ListAPIKeys of another": func() error {
			_, err := b.ListAPIKeys(ctx, req(&sbxv1.ListAPIKeysRequest{TenantId: e.tenantA}))
			return err
		},
		"CreateAPIKey for another": func() error {
			_, err := b.CreateAPIKey(ctx, req(&sbxv1.CreateAPIKeyRequest{TenantId: e.tenantA}))
			return err
		},
	}
	for name, call := range calls {
		ce := wantCode(t, call(), connect.CodePermissionDenied, sandbox.ReasonAdminRequired)
		if !strings.Contains(ce.Message(), "--admin") {
			t.Errorf("%s: message does not say who may: %q", name, ce.Message())
		}
	}
	// Another tenant's key does not exist for b.
	_, err = b.RevokeAPIKey(ctx, req(&sbxv1.RevokeAPIKeyRequest{KeyId: aKeys.Msg.Keys[0].Id}))
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonAPIKeyNotFound)
	if _, err := e.st.GetAPIKey(ctx, aKeys.Msg.Keys[0].Id); err != nil {
		t.Fatalf("a's key after b's revoke: %v", err)
	}

	// b may see itself and manage its own keys.
	if got, err := b.GetTenant(ctx, req(&sbxv1.GetTenantRequest{})); err != nil || got.Msg.Tenant.Id != e.tenantB {
		t.Fatalf("GetTenant of self: %v %v", got, err)
	}
	nk, err := b.CreateAPIKey(ctx, req(&sbxv1.CreateAPIKeyRequest{Label: "rotation"}))
	if err != nil || nk.Msg.Key.TenantId != e.tenantB || !strings.HasPrefix(nk.Msg.ApiKey, auth.KeyPrefix) {
		t.Fatalf("CreateAPIKey of self: %v %v", nk, err)
	}
	if _, err := e.admin(nk.Msg.ApiKey).RevokeAPIKey(ctx, req(&sbxv1.RevokeAPIKeyRequest{KeyId: nk.Msg.Key.Id})); err != nil {
		t.Fatalf("revoke own key: %v", err)
	}
}

func TestAdminCreatedTenantIsIsolated(t *testing.T) {
	e := newAdminEnv(t)
	ctx := context.Background()
	a := e.admin(e.keyA)
	theirs := running(t, e.sandboxes(e.keyA), &sbxv1.CreateSandboxRequest{Tags: []string{"a"}})

	cr, err := a.CreateTenant(ctx, req(&sbxv1.CreateTenantRequest{Name: "team-c", MaxSandboxes: i32(1)}))
	if err != nil {
		t.Fatal(err)
	}
	tn := cr.Msg.Tenant
	if tn.Name != "team-c" || tn.MaxSandboxes != 1 || tn.CreatedAt == nil || cr.Msg.Key.TenantId != tn.Id || !strings.HasPrefix(cr.Msg.ApiKey, auth.KeyPrefix) {
		t.Fatalf("CreateTenant: %v", cr.Msg)
	}
	c := e.sandboxes(cr.Msg.ApiKey)
	list, err := c.List(ctx, req(&sbxv1.ListSandboxesRequest{IncludeTerminal: true}))
	if err != nil || len(list.Msg.Sandboxes) != 0 {
		t.Fatalf("new tenant's list: %v %v", list, err)
	}
	_, err = c.Get(ctx, req(&sbxv1.GetSandboxRequest{Id: theirs.Id}))
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonSandboxNotFound)
	mine := running(t, c, &sbxv1.CreateSandboxRequest{})
	if list, _ := c.List(ctx, req(&sbxv1.ListSandboxesRequest{})); len(list.Msg.Sandboxes) != 1 || list.Msg.Sandboxes[0].Id != mine.Id {
		t.Fatalf("new tenant sees %v", list.Msg.Sandboxes)
	}
	// Its quota is the one given, and UpdateTenant changes it.
	_, err = c.Create(ctx, req(&sbxv1.CreateSandboxRequest{}))
	wantCode(t, err, connect.CodeResourceExhausted, sandbox.ReasonQuotaExceeded)
	up, err := a.UpdateTenant(ctx, req(&sbxv1.UpdateTenantRequest{Id: tn.Id, MaxSandboxes: i32(2)}))
	if err != nil || up.Msg.Tenant.MaxSandboxes != 2 || up.Msg.Tenant.Name != "team-c" {
		t.Fatalf("UpdateTenant: %v %v", up, err)
	}
	running(t, c, &sbxv1.CreateSandboxRequest{})

	got, err := a.GetTenant(ctx, req(&sbxv1.GetTenantRequest{Id: tn.Id}))
	if err != nil || got.Msg.Tenant.MaxSandboxes != 2 {
		t.Fatalf("GetTenant: %v %v", got, err)
	}
	lt, err := a.ListTenants(ctx, req(&sbxv1.ListTenantsRequest{}))
	if err != nil || len(lt.Msg.Tenants) != 3 {
		t.Fatalf("ListTenants: %v %v", lt, err)
	}
	_, err = a.GetTenant(ctx, req(&sbxv1.GetTenantRequest{Id: "tn-nope"}))
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonTenantNotFound)
	_, err = a.ListAPIKeys(ctx, req(&sbxv1.ListAPIKeysRequest{TenantId: "tn-nope"}))
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonTenantNotFound)
}

func TestAdminRevokeIsImmediate(t *testing.T) {
	e := newAdminEnv(t)
	ctx := context.Background()
	a := e.admin(e.keyA)
	ck, err := a.CreateAPIKey(ctx, req(&sbxv1.CreateAPIKeyRequest{TenantId: e.tenantB, Label: "ci runner"}))
	if err != nil {
		t.Fatal(err)
	}
	b2 := e.sandboxes(ck.Msg.ApiKey)
	for range 2 { // the second call is answered from the key cache
		if _, err := b2.List(ctx, req(&sbxv1.ListSandboxesRequest{})); err != nil {
			t.Fatalf("new key: %v", err)
		}
	}
	keys, err := a.ListAPIKeys(ctx, req(&sbxv1.ListAPIKeysRequest{TenantId: e.tenantB}))
	if err != nil || len(keys.Msg.Keys) != 2 {
		t.Fatalf("ListAPIKeys: %v %v", keys, err)
	}
	last := keys.Msg.Keys[1]
	if last.Id != ck.Msg.Key.Id || last.Label != "ci runner" || last.CreatedAt == nil || last.TenantId != e.tenantB {
		t.Fatalf("listed key %v, want %v", last, ck.Msg.Key)
	}
	if _, err := a.RevokeAPIKey(ctx, req(&sbxv1.RevokeAPIKeyRequest{KeyId: ck.Msg.Key.Id})); err != nil {
		t.Fatal(err)
	}
	_, err = b2.List(ctx, req(&sbxv1.ListSandboxesRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated, sandbox.ReasonUnauthenticated)
	// b's first key still works.
	if _, err := e.sandboxes(e.keyB).List(ctx, req(&sbxv1.ListSandboxesRequest{})); err != nil {
		t.Fatal(err)
	}
	_, err = a.RevokeAPIKey(ctx, req(&sbxv1.RevokeAPIKeyRequest{KeyId: ck.Msg.Key.Id}))
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonAPIKeyNotFound)

	// The admin's last key stays.
	own, _ := a.ListAPIKeys(ctx, req(&sbxv1.ListAPIKeysRequest{}))
	_, err = a.RevokeAPIKey(ctx, req(&sbxv1.RevokeAPIKeyRequest{KeyId: own.Msg.Keys[0].Id}))
	wantCode(t, err, connect.CodeFailedPrecondition, sandbox.ReasonLastAdminKey)
}

func TestAdminBounds(t *testing.T) {
	e := newAdminEnv(t)
	ctx := context.Background()
	a := e.admin(e.keyA)
	bad := func(what string, err error) {
		t.Helper()
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: got %v, want INVALID_ARGUMENT", what, err)
		}
	}
	for _, name := range []string{"", "has space", "-dash", strings.Repeat("n", 129), "new\nline", "é"} {
		_, err := a.CreateTenant(ctx, req(&sbxv1.CreateTenantRequest{Name: name}))
		bad(fmt.Sprintf("name %q", name), err)
	}
	for _, q := range []int32{-1, server.MaxTenantQuota + 1} {
		_, err := a.CreateTenant(ctx, req(&sbxv1.CreateTenantRequest{Name: "ok", MaxSandboxes: i32(q)}))
		bad(fmt.Sprintf("create quota %d", q), err)
		_, err = a.UpdateTenant(ctx, req(&sbxv1.UpdateTenantRequest{Id: e.tenantB, MaxSandboxes: i32(q)}))
		bad(fmt.Sprintf("update quota %d", q), err)
	}
	for _, l := range []string{strings.Repeat("l", 129), "tab\there", "\x00"} {
		_, err := a.CreateAPIKey(ctx, req(&sbxv1.CreateAPIKeyRequest{TenantId: e.tenantB, Label: l}))
		bad(fmt.Sprintf("label %q", l), err)
	}
	_, err := a.ListTenants(ctx, req(&sbxv1.ListTenantsRequest{PageSize: 1001}))
	bad("page size", err)
	_, err = a.ListTenants(ctx, req(&sbxv1.ListTenantsRequest{PageToken: "garbage"}))
	wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonInvalidPageToken)
	_, err = a.RevokeAPIKey(ctx, req(&sbxv1.RevokeAPIKeyRequest{KeyId: strings.Repeat("k", 200)}))
	bad("long key id", err)
	_, err = a.ListAPIKeys(ctx, req(&sbxv1.ListAPIKeysRequest{TenantId: "../etc"}))
	bad("tenant id", err)

	// Pages of one tenant each walk every tenant once.
	var seen []string
	tok := ""
	for range 5 {
		p, err := a.ListTenants(ctx, req(&sbxv1.ListTenantsRequest{PageSize: 1, PageToken: tok}))
		if err != nil {
			t.Fatal(err)
		}
		for _, tn := range p.Msg.Tenants {
			seen = append(seen, tn.Id)
		}
		if tok = p.Msg.NextPageToken; tok == "" {
			break
		}
	}
	if len(seen) != 2 {
		t.Fatalf("paged tenants %v, want a and b", seen)
	}

	// A tenant has at most store.MaxAPIKeysPerTenant keys.
	for i := 1; i < store.MaxAPIKeysPerTenant; i++ {
		if _, err := a.CreateAPIKey(ctx, req(&sbxv1.CreateAPIKeyRequest{TenantId: e.tenantB})); err != nil {
			t.Fatalf("key %d: %v", i+1, err)
		}
	}
	_, err = a.CreateAPIKey(ctx, req(&sbxv1.CreateAPIKeyRequest{TenantId: e.tenantB}))
	wantCode(t, err, connect.CodeResourceExhausted, sandbox.ReasonTooManyAPIKeys)
}
