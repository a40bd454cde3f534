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
	t := &sandbox.Tenant{Name: name}
	_, secret, err := CreateTenant(ctx, st, t, "")
	if err != nil {
		return nil, "", err
	}
	return t, secret, nil
}

// CreateTenant stores t, giving it a new id (when empty) and its creation
// time, and issues its first API key, labelled label. It returns the key
// and its secret. Should the key fail, the tenant stays without one: an
// admin can issue it another.
func CreateTenant(ctx context.Context, st store.Store, t *sandbox.Tenant, label string) (*sandbox.APIKey, string, error) {
	if t.ID == "" {
		t.ID = "tn-" + randomHex(8)
	}
	t.CreatedAt = time.Now().UTC()
	if err := st.CreateTenant(ctx, t); err != nil {
		return nil, "", err
	}
	return IssueKey(ctx, st, t.ID, label)
}

// NewKey creates another API key for a tenant and returns its secret.
func NewKey(ctx context.Context, st store.Store, tenantID string) (string, error) {
	_, secret, err := IssueKey(ctx, st, tenantID, "")
	return secret, err
}

// IssueKey creates another API key for a tenant, labelled label, and
// returns it (with its public id) and its secret.
func IssueKey(ctx context.Context, st store.Store, tenantID, label string) (*sandbox.APIKey, string, error) {
	secret := KeyPrefix + randomHex(32)
	k := &sandbox.APIKey{ID: "key-" + randomHex(6), TenantID: tenantID, Hash: HashKey(secret), Label: label, CreatedAt: time.Now().UTC()}
	if err := st.CreateAPIKey(ctx, k); err != nil {
		return nil, "", err
	}
	return k, secret, nil
}

// CacheTTL is how long an Authenticator trusts a key it looked up: the
// longest a key revoked on another replica keeps working on this one.
const CacheTTL = time.Minute

// Authenticator resolves API keys to tenants. It caches hits briefly, so
// that a stream of small calls does not read the store on each one. A
// server shares one Authenticator among everything that checks keys (API,
// bulk transfers, port proxy), so that Revoke takes effect at once.
type Authenticator struct {
	st  store.Store
	ttl time.Duration

	mu    sync.Mutex
	cache map[string]cached // by hash
	// revokes counts Revoke calls: a lookup that raced one is not cached,
	// since it may have read the key just before it was deleted.
	revokes uint64
}

type cached struct {
	tenantID string
	until    time.Time
}

// NewAuthenticator returns an Authenticator over st.
func NewAuthenticator(st store.Store) *Authenticator {
	return &Authenticator{st: st, ttl: CacheTTL, cache: map[string]cached{}}
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
	revokes := a.revokes
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
	if a.revokes == revokes {
		a.cache[hash] = cached{tenantID: k.TenantID, until: now.Add(a.ttl)}
	}
	a.mu.Unlock()
	return k.TenantID, nil
}

// Revoke deletes the key with id keyID from the store and from this
// Authenticator's cache, so that it stops working at once here. Other
// Authenticators (other replicas sharing the store) may still accept it
// from their caches for up to CacheTTL. It returns the deleted key.
func (a *Authenticator) Revoke(ctx context.Context, keyID string) (*sandbox.APIKey, error) {
	k, err := a.st.DeleteAPIKey(ctx, keyID)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	delete(a.cache, k.Hash)
	a.revokes++
	a.mu.Unlock()
	return k, nil
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
