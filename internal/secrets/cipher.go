package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// KeySize is the size of the server's key: AES-256.
const KeySize = 32

// sealVersion is the first byte of every sealed value, so that a later
// format (or key rotation) can tell the rows apart.
const sealVersion = 1

// Cipher seals and opens secret values under one key.
type Cipher struct {
	aead cipher.AEAD
	id   string
}

// NewCipher returns a Cipher for a KeySize-byte key.
func NewCipher(key []byte) (*Cipher, error) {
	if len(key) != KeySize {
		return nil, invalid("the secrets key is %d bytes: it must be %d (AES-256)", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, sandbox.Internal("secrets key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, sandbox.Internal("secrets key: %w", err)
	}
	sum := sha256.Sum256(key)
	return &Cipher{aead: aead, id: hex.EncodeToString(sum[:4])}, nil
}

// KeyID is a short fingerprint of the key (not a secret), for logs.
func (c *Cipher) KeyID() string { return c.id }

// additional binds a sealed value to its tenant and name: the lengths
// keep ("ab","c") and ("a","bc") apart.
func additional(tenantID, name string) []byte {
	return fmt.Appendf(nil, "sbx-secret/v1\x00%d:%s\x00%d:%s", len(tenantID), tenantID, len(name), name)
}

// Seal encrypts value for tenantID's secret name: version, random nonce,
// then the ciphertext with its tag.
func (c *Cipher) Seal(tenantID, name string, value []byte) ([]byte, error) {
	out := make([]byte, 1+c.aead.NonceSize(), 1+c.aead.NonceSize()+len(value)+c.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, sandbox.Internal("secret nonce: %w", err)
	}
	return c.aead.Seal(out, out[1:], value, additional(tenantID, name)), nil
}

// Open decrypts what Seal made for the same tenant and name. Any other
// key, tenant or name, or a changed byte, fails with SECRET_UNREADABLE.
func (c *Cipher) Open(tenantID, name string, sealed []byte) ([]byte, error) {
	n := c.aead.NonceSize()
	if len(sealed) < 1+n+c.aead.Overhead() || sealed[0] != sealVersion {
		return nil, unreadable(name)
	}
	v, err := c.aead.Open(nil, sealed[1:1+n], sealed[1+n:], additional(tenantID, name))
	if err != nil {
		return nil, unreadable(name)
	}
	return v, nil
}

func unreadable(name string) error {
	return sandbox.FailedPrecondition(sandbox.ReasonSecretUnreadable,
		"secret %s cannot be decrypted with this server's key (the key was replaced or lost, or the row was altered): set the secret again with `sbx secret set %s`", name, name)
}
