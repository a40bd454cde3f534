package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	sbx "github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/store/sqlite"
)

// TestBootstrapLocal: the first start creates the tenant and a key and
// writes them (0600); a restart keeps the key and only updates the URL; a
// lost or foreign key file gets a new key.
func TestBootstrapLocal(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	path := filepath.Join(dir, "cfg", "credentials")

	if err := bootstrapLocal(ctx, st, path, "http://127.0.0.1:1", "", log); err != nil {
		t.Fatal(err)
	}
	c1, err := sbx.ReadCredentials(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials mode %v, want 0600", fi.Mode().Perm())
	}
	a := auth.NewAuthenticator(st)
	if tn, err := a.Authenticate(ctx, "Bearer "+c1.APIKey); err != nil || tn != LocalTenant {
		t.Fatalf("first key: tenant %q, %v", tn, err)
	}

	if err := bootstrapLocal(ctx, st, path, "http://127.0.0.1:2", "", log); err != nil {
		t.Fatal(err)
	}
	c2, _ := sbx.ReadCredentials(path)
	if c2.APIKey != c1.APIKey || c2.URL != "http://127.0.0.1:2" {
		t.Errorf("restart: %+v, want the same key and the new URL", c2)
	}

	sbx.WriteCredentials(path, sbx.Credentials{URL: "x", APIKey: "sbx_unknown"})
	if err := bootstrapLocal(ctx, st, path, "http://127.0.0.1:3", "", log); err != nil {
		t.Fatal(err)
	}
	c3, _ := sbx.ReadCredentials(path)
	if c3.APIKey == "sbx_unknown" || c3.APIKey == c1.APIKey {
		t.Errorf("unknown key in file was kept: %+v", c3)
	}
	if tn, err := a.Authenticate(ctx, "Bearer "+c3.APIKey); err != nil || tn != LocalTenant {
		t.Errorf("new key: tenant %q, %v", tn, err)
	}
}
