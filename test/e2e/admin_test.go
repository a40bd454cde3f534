package e2e

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
)

// TestAdminTenantLifecycle: the local tenant (an admin) creates a tenant
// with the CLI; its key runs a sandbox and sees none of the admin's; a
// non-admin is refused tenant calls; the admin revokes the key and the next
// call with it is UNAUTHENTICATED at once; a new key of the tenant still
// reaches its sandbox.
func TestAdminTenantLifecycle(t *testing.T) {
	s := startServer(t)
	ctx := ctxT(t, 2*time.Minute)
	admin := s.client()
	mine, err := admin.Run(ctx, sbx.Image("busybox"))
	if err != nil {
		t.Fatal(err)
	}

	out, errOut, code := s.cli("", "admin", "tenant", "create", "team-e2e", "--max-sandboxes", "2", "--json")
	if code != 0 || !strings.Contains(errOut, "cannot show it again") {
		t.Fatalf("sbx admin tenant create: exit %d\n%s\n%s", code, out, errOut)
	}
	var created struct {
		Tenant struct {
			ID           string `json:"id"`
			MaxSandboxes int    `json:"maxSandboxes"`
		} `json:"tenant"`
		Key struct {
			ID     string `json:"id"`
			APIKey string `json:"apiKey"`
		} `json:"key"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Key.APIKey == "" || created.Tenant.MaxSandboxes != 2 {
		t.Fatalf("tenant create output %q: %v", out, err)
	}

	team := s.client(created.Key.APIKey)
	sb, err := team.Run(ctx, sbx.Image("busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := team.List(ctx, sbx.ListOptions{All: true})
	if err != nil || len(list) != 1 || list[0].ID() != sb.ID() {
		t.Fatalf("new tenant lists %v (%v), want only %s", list, err, sb.ID())
	}
	if _, err := team.Get(ctx, mine.ID()); !errors.Is(err, sbx.ErrNotFound) {
		t.Fatalf("new tenant gets the admin's sandbox: %v", err)
	}
	if _, err := team.ListTenants(ctx); !errors.Is(err, sbx.ErrPermissionDenied) || sbx.ReasonOf(err) != "ADMIN_REQUIRED" {
		t.Fatalf("non-admin ListTenants: %v", err)
	}

	// A file read (the bulk endpoint) caches the key there too.
	if _, err := sb.ReadFile(ctx, "/etc/hostname"); err != nil {
		t.Fatalf("read with the new key: %v", err)
	}

	out, _, code = s.cli("", "admin", "key", "ls", created.Tenant.ID)
	if code != 0 || !strings.Contains(out, created.Key.ID) || strings.Contains(out, created.Key.APIKey) {
		t.Fatalf("sbx admin key ls: exit %d\n%s", code, out)
	}
	if out, errOut, code := s.cli("", "admin", "key", "revoke", created.Key.ID); code != 0 {
		t.Fatalf("sbx admin key revoke: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, err := team.Get(ctx, sb.ID()); !errors.Is(err, sbx.ErrUnauthenticated) {
		t.Fatalf("call with the revoked key: %v, want ErrUnauthenticated", err)
	}
	// The bulk endpoints share the API's key cache: revoked there at once too.
	if _, err := sb.ReadFile(ctx, "/etc/hostname"); !errors.Is(err, sbx.ErrUnauthenticated) {
		t.Fatalf("file read with the revoked key: %v, want ErrUnauthenticated", err)
	}

	// The tenant and its sandbox live on: a new key reaches it.
	k2, err := admin.CreateAPIKey(ctx, created.Tenant.ID, "cleanup")
	if err != nil {
		t.Fatal(err)
	}
	team2 := s.client(k2.Secret)
	if info, err := team2.Get(ctx, sb.ID()); err != nil || info.Info().State != sbx.StateRunning {
		t.Fatalf("the tenant's sandbox with its new key: %v", err)
	}
	deleteAll(t, ctx, team2)
}
