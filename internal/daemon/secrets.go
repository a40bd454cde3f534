package daemon

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/sbx-run/sbx/internal/secrets"
)

// secretsKeyName is the key file's name in the data dir.
const secretsKeyName = "secrets.key"

// secretsKeyPath is where the secrets key is read: SecretsKeyFile, else
// <DataDir>/secrets.key.
func (c Config) secretsKeyPath() string {
	if c.SecretsKeyFile != "" {
		return c.SecretsKeyFile
	}
	return filepath.Join(c.DataDir, secretsKeyName)
}

// loadSecretsKey returns the cipher for the tenants' secrets. The key is
// 32 random bytes, base64 in a file. A configured SecretsKeyFile must
// exist (every replica of a PostgreSQL deployment needs the same key); the
// data dir's is created, 0600, on first start. A lost key cannot be
// recovered: the secrets stay listed but every create naming one fails
// with SECRET_UNREADABLE until it is set again.
func (c Config) loadSecretsKey(log *slog.Logger) (*secrets.Cipher, error) {
	path := c.secretsKeyPath()
	if c.StoreDSN != "" && c.SecretsKeyFile == "" {
		log.Warn("secrets are sealed with a key in this server's data dir: with several replicas sharing the PostgreSQL store, give each the same --secrets-key-file, or a secret set through one cannot be read by the others", "path", path)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && c.SecretsKeyFile == "" {
		if b, err = createSecretsKey(path); err == nil {
			log.Info("created the secrets key; back it up with the store, secrets cannot be read without it", "path", path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("secrets key %s: %w (give --secrets-key-file a file holding 32 random bytes in base64, e.g. from `head -c32 /dev/urandom | base64`)", path, err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != secrets.KeySize {
		return nil, fmt.Errorf("secrets key %s is not %d bytes in base64: make one with `head -c32 /dev/urandom | base64`", path, secrets.KeySize)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the secrets key file is readable by others than its owner: chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
	}
	return secrets.NewCipher(key)
}

// createSecretsKey writes a new random key to path, 0600, failing if the
// file exists (a concurrent start made one: that one is read instead).
func createSecretsKey(path string) ([]byte, error) {
	key := make([]byte, secrets.KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	text := []byte(base64.StdEncoding.EncodeToString(key) + "\n")
	tmp, err := os.CreateTemp(filepath.Dir(path), ".secrets.key-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, err
	}
	if _, err := tmp.Write(text); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	// Link, not rename: it fails if another start created the key since.
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return os.ReadFile(path)
	} else if err != nil {
		return nil, err
	}
	return text, nil
}

// openSecrets returns the tenants' secret manager over st, whose backends
// all keep secrets too.
func openSecrets(cfg Config, st any, log *slog.Logger) (*secrets.Manager, error) {
	ss, ok := st.(secrets.Store)
	if !ok {
		return nil, fmt.Errorf("the store %T keeps no secrets", st)
	}
	c, err := cfg.loadSecretsKey(log)
	if err != nil {
		return nil, err
	}
	return secrets.NewManager(ss, c), nil
}
