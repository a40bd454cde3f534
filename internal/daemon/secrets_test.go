package daemon

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretsKey(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	cfg := Config{DataDir: dir}
	c1, err := cfg.loadSecretsKey(log)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	// The next start reads the same key: what one sealed the other opens.
	c2, err := cfg.loadSecretsKey(log)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := c1.Seal("t", "N", []byte("v"))
	if v, err := c2.Open("t", "N", sealed); err != nil || string(v) != "v" {
		t.Errorf("reloaded key does not open: %q, %v", v, err)
	}
	if c1.KeyID() != c2.KeyID() {
		t.Errorf("key ids differ: %s, %s", c1.KeyID(), c2.KeyID())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".secrets.key-*")); len(left) != 0 {
		t.Errorf("temporary key files left: %v", left)
	}

	// A configured key file must exist and hold 32 bytes in base64.
	missing := Config{DataDir: dir, SecretsKeyFile: filepath.Join(dir, "nope.key")}
	if _, err := missing.loadSecretsKey(log); err == nil || !strings.Contains(err.Error(), "--secrets-key-file") {
		t.Errorf("missing configured key: %v", err)
	}
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("c2hvcnQ=\n"), 0o600)
	if _, err := (Config{DataDir: dir, SecretsKeyFile: bad}).loadSecretsKey(log); err == nil || !strings.Contains(err.Error(), "not 32 bytes") {
		t.Errorf("short configured key: %v", err)
	}
	good := filepath.Join(dir, "good.key")
	os.WriteFile(good, []byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"), 0o600)
	if _, err := (Config{DataDir: dir, SecretsKeyFile: good}).loadSecretsKey(log); err != nil {
		t.Errorf("good configured key: %v", err)
	}
}
