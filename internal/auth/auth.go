// Package auth is sbx's API-key authentication: keys are random secrets
// handed out once, stored only as SHA-256 hashes, and each belongs to one
// tenant. The server's interceptor resolves a Bearer key to its tenant and
// puts the tenant id in the request context.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// KeyPrefix starts every API key, so that leaked keys are easy to grep for.
const KeyPrefix = "sbx_"

// maxKeyLen bounds what we hash from a request header.
const maxKeyLen = 256

// HashKey returns the hex SHA-256 of a secret key: what the store keeps.
func HashKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewTenant creates a tenant named name (quota 0: the server default) and
// one API key for it. It returns the tenant and the secret key, which is
// never stored and cannot be shown again.
func NewTenant(ctx context.Context, st store.Store, name string) (*sandbox.Tenant, string, error) {
	t := &sandbox.Tenant{ID: "tn-" + randomHex(8), Name: name}
	if err := st.CreateTenant(ctx, t); err != nil {
		return nil, "", err
	}
	secret, err := NewKey(ctx, st, t.ID)
	if err != nil {
		return nil, "", err
	}
	return t, secret, nil
}

// NewKey creates another API key for a tenant and returns its secret.
func NewKey(ctx context.Context, st store.Store, tenantID string) (string, error) {
	secret := KeyPrefix + randomHex(32)
	k := &sandbox.APIKey{ID: "key-" + randomHex(6), TenantID: tenantID, Hash: HashKey(secret), CreatedAt: time.Now()}
	if err := st.CreateAPIKey(ctx, k); err != nil {
		return "", err
	}
	return secret, nil
}

// Authenticator resolves API keys to tenants. It caches hits briefly, so
// that a stream of small calls does not read the store on each one.
type Authenticator struct {
	st  store.Store
	ttl time.Duration

	mu    sync.Mutex
	cache map[string]cached // by hash
}

type cached struct {
	tenantID string
	until    time.Time
}

// NewAuthenticator returns an Authenticator over st.
func NewAuthenticator(st store.Store) *Authenticator {
	return &Authenticator{st: st, ttl: time.Minute, cache: map[string]cached{}}
}

func unauthenticated(format string, args ...any) error {
	return sandbox.Errorf(sandbox.ErrUnauthenticated, sandbox.ReasonUnauthenticated, format, args...)
}

// Authenticate returns the tenant of the key in an Authorization header
// value ("Bearer sbx_..."). A missing, malformed or unknown key is
// Unauthenticated.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (string, error) {
	key, ok := strings.CutPrefix(header, "Bearer ")
	key = strings.TrimSpace(key)
	if !ok || key == "" {
		return "", unauthenticated("missing API key: send the header \"Authorization: Bearer <key>\" (set SBX_API_KEY for the SDK and CLI)")
	}
	if len(key) > maxKeyLen {
		return "", unauthenticated("API key is malformed: use the key printed by `sbx serve`")
	}
	hash := HashKey(key)
	now := time.Now()
	a.mu.Lock()
	c, hit := a.cache[hash]
	a.mu.Unlock()
	if hit && now.Before(c.until) {
		return c.tenantID, nil
	}
	k, err := a.st.LookupAPIKey(ctx, hash)
	if errors.Is(err, sandbox.ErrNotFound) {
		return "", unauthenticated("unknown API key: use the key printed by `sbx serve`")
	}
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	if len(a.cache) > 10000 {
		a.cache = map[string]cached{}
	}
	a.cache[hash] = cached{tenantID: k.TenantID, until: now.Add(a.ttl)}
	a.mu.Unlock()
	return k.TenantID, nil
}

type tenantKey struct{}

// WithTenant returns ctx carrying the caller's tenant id.
func WithTenant(ctx context.Context, tenantID string) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenantID)
}

// TenantFrom returns the tenant id put in ctx by WithTenant.
func TenantFrom(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(tenantKey{}).(string)
	return id, ok && id != ""
}
