package auth

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store/sqlite"
)

func TestRevokeDropsTheCachedKey(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tn := &sandbox.Tenant{Name: "team", MaxSandboxes: 5}
	first, secret, err := CreateTenant(ctx, st, tn, "first")
	if err != nil {
		t.Fatal(err)
	}
	if tn.ID == "" || tn.CreatedAt.IsZero() || first.TenantID != tn.ID || first.Label != "first" || first.ID == "" {
		t.Fatalf("CreateTenant: %+v %+v", tn, first)
	}
	a := NewAuthenticator(st)
	if got, err := a.Authenticate(ctx, "Bearer "+secret); err != nil || got != tn.ID {
		t.Fatalf("Authenticate: %q %v", got, err)
	}
	// The key is cached now; Revoke must drop it from the cache too.
	k, err := a.Revoke(ctx, first.ID)
	if err != nil || k.Hash != HashKey(secret) {
		t.Fatalf("Revoke: %+v %v", k, err)
	}
	if _, err := a.Authenticate(ctx, "Bearer "+secret); !errors.Is(err, sandbox.ErrUnauthenticated) {
		t.Fatalf("revoked key: %v", err)
	}
	if _, err := a.Revoke(ctx, first.ID); !errors.Is(err, sandbox.ErrNotFound) {
		t.Fatalf("second Revoke: %v", err)
	}
}
