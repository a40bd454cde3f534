package sqlite_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/sbx-run/sbx/internal/store/sqlite"
)

// TestMigrateKeysAndTenants: a store at schema 3 (before labels and
// tenant creation times) keeps its tenants and keys across the upgrade;
// they read back with an empty label and an unknown creation time, and
// the keys (which always had a public id) can be listed and revoked.
func TestMigrateKeysAndTenants(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sbx.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for v, f := range []string{"0001_init.sql", "0002_pools.sql", "0003_secrets.sql"} {
		body, err := os.ReadFile(filepath.Join("migrations", f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(body)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if v == 0 {
			if _, err := db.Exec(`CREATE TABLE schema_version (version INTEGER NOT NULL)`); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.Exec(`INSERT INTO schema_version (version) VALUES (?)`, v+1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO tenants (id, name, max_sandboxes) VALUES ('old', 'old team', 4);
		INSERT INTO api_keys (id, tenant_id, hash, created_at) VALUES ('key-old', 'old', 'hash-old', 42)`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tn, err := s.GetTenant(t.Context(), "old")
	if err != nil || tn.Name != "old team" || tn.MaxSandboxes != 4 || !tn.CreatedAt.IsZero() {
		t.Fatalf("migrated tenant: %+v %v", tn, err)
	}
	keys, err := s.ListAPIKeys(t.Context(), "old")
	if err != nil || len(keys) != 1 || keys[0].ID != "key-old" || keys[0].Label != "" || keys[0].Hash != "hash-old" {
		t.Fatalf("migrated keys: %+v %v", keys, err)
	}
	if _, err := s.DeleteAPIKey(t.Context(), "key-old"); err != nil {
		t.Fatal(err)
	}
}
