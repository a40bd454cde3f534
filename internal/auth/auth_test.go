package auth

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store/sqlite"
)

func TestNewTenantAndAuthenticate(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tn, secret, err := NewTenant(ctx, st, "team")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, KeyPrefix) || len(secret) != len(KeyPrefix)+64 {
		t.Fatalf("secret %q", secret)
	}
	// Only the hash is stored.
	k, err := st.LookupAPIKey(ctx, HashKey(secret))
	if err != nil || k.TenantID != tn.ID || k.Hash == secret {
		t.Fatalf("stored key: %v %+v", err, k)
	}

	a := NewAuthenticator(st)
	for i := 0; i < 2; i++ { // the second call is served from the cache
		got, err := a.Authenticate(ctx, "Bearer "+secret)
		if err != nil || got != tn.ID {
			t.Fatalf("Authenticate: %q %v", got, err)
		}
	}
	second, err := NewKey(ctx, st, tn.ID)
	if err != nil || second == secret {
		t.Fatalf("NewKey: %v", err)
	}
	if got, _ := a.Authenticate(ctx, "Bearer "+second); got != tn.ID {
		t.Fatalf("second key resolves to %q", got)
	}
	for _, h := range []string{"", "Bearer ", "Basic abc", "Bearer sbx_unknown", "Bearer " + strings.Repeat("x", 1000)} {
		_, err := a.Authenticate(ctx, h)
		if !errors.Is(err, sandbox.ErrUnauthenticated) || sandbox.ReasonOf(err) != sandbox.ReasonUnauthenticated {
			t.Fatalf("header %q: %v", h, err)
		}
	}

	c := WithTenant(ctx, tn.ID)
	if got, ok := TenantFrom(c); !ok || got != tn.ID {
		t.Fatalf("TenantFrom: %q %v", got, ok)
	}
	if _, ok := TenantFrom(ctx); ok {
		t.Fatal("TenantFrom on a bare context")
	}
}
