package secrets

import (
	"context"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Stored is a secret as a store keeps it: the sealed value only.
type Stored struct {
	TenantID string
	Name     string
	// Sealed is what Cipher.Seal made; ListSecrets leaves it nil.
	Sealed    []byte
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Store persists secrets. Every method is scoped to one tenant; no
// method reaches another tenant's rows. Errors are of the sandbox kinds.
type Store interface {
	// PutSecret inserts s or replaces the sealed value of the tenant's
	// secret of that name (keeping its CreatedAt), and reports whether it
	// was new. A new secret beyond max for the tenant is refused with
	// ResourceExhausted TOO_MANY_SECRETS; the count and the insert are one
	// transaction, so concurrent puts cannot overshoot.
	PutSecret(ctx context.Context, s *Stored, max int) (created bool, err error)
	// GetSecrets returns the tenant's secrets among names, sealed values
	// included; names it has not are simply absent.
	GetSecrets(ctx context.Context, tenantID string, names []string) ([]*Stored, error)
	// ListSecrets returns the tenant's secrets sorted by name, without
	// their sealed values.
	ListSecrets(ctx context.Context, tenantID string) ([]*Stored, error)
	// DeleteSecret removes one. NotFound SECRET_NOT_FOUND if absent.
	DeleteSecret(ctx context.Context, tenantID, name string) error
}

// Info describes a secret without its value.
type Info struct {
	Name      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Manager is the secret manager: validation, sealing and the store.
type Manager struct {
	st  Store
	c   *Cipher
	now func() time.Time
}

// NewManager returns a Manager over st with values sealed by c.
func NewManager(st Store, c *Cipher) *Manager {
	return &Manager{st: st, c: c, now: time.Now}
}

// Set stores value as tenantID's secret name and reports whether it is new.
func (m *Manager) Set(ctx context.Context, tenantID, name, value string) (Info, bool, error) {
	if err := ValidateName("name", name); err != nil {
		return Info{}, false, err
	}
	if err := ValidateValue(value); err != nil {
		return Info{}, false, err
	}
	sealed, err := m.c.Seal(tenantID, name, []byte(value))
	if err != nil {
		return Info{}, false, err
	}
	now := m.now().UTC()
	s := &Stored{TenantID: tenantID, Name: name, Sealed: sealed, CreatedAt: now, UpdatedAt: now}
	created, err := m.st.PutSecret(ctx, s, MaxPerTenant)
	if err != nil {
		return Info{}, false, err
	}
	return Info{Name: name, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}, created, nil
}

// List returns tenantID's secrets sorted by name, without values.
func (m *Manager) List(ctx context.Context, tenantID string) ([]Info, error) {
	rows, err := m.st.ListSecrets(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(rows))
	for _, r := range rows {
		out = append(out, Info{Name: r.Name, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt})
	}
	return out, nil
}

// Delete removes tenantID's secret name.
func (m *Manager) Delete(ctx context.Context, tenantID, name string) error {
	if err := ValidateName("name", name); err != nil {
		return err
	}
	return m.st.DeleteSecret(ctx, tenantID, name)
}

// Resolve returns the environment that refs inject for tenantID: env var
// to value. The first name the tenant has no secret by fails it with
// NotFound SECRET_NOT_FOUND naming it. refs must have passed ValidateRefs.
func (m *Manager) Resolve(ctx context.Context, tenantID string, refs []sandbox.SecretRef) (map[string]string, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(refs))
	for _, r := range refs {
		names = append(names, r.Name)
	}
	rows, err := m.st.GetSecrets(ctx, tenantID, names)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*Stored, len(rows))
	for _, r := range rows {
		if r.TenantID == tenantID { // a store bug must not cross tenants
			byName[r.Name] = r
		}
	}
	env := make(map[string]string, len(refs))
	for i, r := range refs {
		s, ok := byName[r.Name]
		if !ok {
			return nil, NotFound(r.Name, i)
		}
		v, err := m.c.Open(tenantID, r.Name, s.Sealed)
		if err != nil {
			return nil, err
		}
		env[r.Var()] = string(v)
	}
	return env, nil
}

// NotFound is the error for a secret name the tenant has not, named by
// secrets[i] of a create (i < 0: by no field).
func NotFound(name string, i int) error {
	if i < 0 {
		return sandbox.NotFound(sandbox.ReasonSecretNotFound, "no secret named %s: set it first with `sbx secret set %s`", name, name)
	}
	return sandbox.NotFound(sandbox.ReasonSecretNotFound, "secrets[%d]: no secret named %s: set it first with `sbx secret set %s` (or Secrets.set in an SDK)", i, name, name)
}

// TooMany is the error for a new secret beyond max for a tenant that has n.
func TooMany(n, max int) error {
	return sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonTooManySecrets,
		"the tenant stores %d secrets, the most allowed is %d: delete some with `sbx secret rm NAME` first", n, max)
}
