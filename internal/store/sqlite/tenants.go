package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
	"github.com/sbx-run/sbx/internal/store/internal/rowcodec"
)

const (
	tenantColumns = `id, name, max_sandboxes, created_at`
	keyColumns    = `id, tenant_id, hash, label, created_at`
)

func scanTenant(row interface{ Scan(...any) error }) (*sandbox.Tenant, error) {
	var (
		t       sandbox.Tenant
		created int64
	)
	if err := row.Scan(&t.ID, &t.Name, &t.MaxSandboxes, &created); err != nil {
		return nil, err
	}
	t.CreatedAt = rowcodec.Time(created)
	return &t, nil
}

func scanKey(row interface{ Scan(...any) error }) (*sandbox.APIKey, error) {
	var (
		k       sandbox.APIKey
		created int64
	)
	if err := row.Scan(&k.ID, &k.TenantID, &k.Hash, &k.Label, &created); err != nil {
		return nil, err
	}
	k.CreatedAt = rowcodec.Time(created)
	return &k, nil
}

// CreateTenant implements store.Store. The writer connection serializes
// writes, so the count and the insert cannot interleave with another.
func (s *Store) CreateTenant(ctx context.Context, t *sandbox.Tenant) error {
	defer s.writer()() // one writer at a time, in arrival order
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return rowcodec.Wrap("begin create tenant", err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM tenants`).Scan(&n); err != nil {
		return rowcodec.Wrap("count tenants", err)
	}
	if n >= store.MaxTenants {
		return rowcodec.TooManyTenants()
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO tenants (`+tenantColumns+`) VALUES (?, ?, ?, ?)`,
		t.ID, t.Name, t.MaxSandboxes, rowcodec.Nanos(t.CreatedAt))
	if _, dup := uniqueViolation(err); dup {
		return rowcodec.TenantExists(t.ID, err)
	}
	if err != nil {
		return rowcodec.Wrap("create tenant "+t.ID, err)
	}
	return rowcodec.Wrap("commit create tenant "+t.ID, tx.Commit())
}

// GetTenant implements store.Store.
func (s *Store) GetTenant(ctx context.Context, id string) (*sandbox.Tenant, error) {
	return getTenant(ctx, s.r, id)
}

func getTenant(ctx context.Context, q queryer, id string) (*sandbox.Tenant, error) {
	t, err := scanTenant(q.QueryRowContext(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rowcodec.TenantNotFound(id)
	}
	if err != nil {
		return nil, rowcodec.Wrap("get tenant "+id, err)
	}
	return t, nil
}

// ListTenants implements store.Store.
func (s *Store) ListTenants(ctx context.Context, pageSize int, pageToken string) ([]*sandbox.Tenant, string, error) {
	p, err := rowcodec.CheckTenantPage(pageSize, pageToken)
	if err != nil {
		return nil, "", err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id > ? ORDER BY id LIMIT ?`, p.After, p.Size+1)
	if err != nil {
		return nil, "", rowcodec.Wrap("list tenants", err)
	}
	defer rows.Close()
	var out []*sandbox.Tenant
	for rows.Next() {
		t, err := scanTenant(rows)
		if err != nil {
			return nil, "", rowcodec.Wrap("list tenants", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, "", rowcodec.Wrap("list tenants", err)
	}
	page, next := rowcodec.TenantsPage(p, out)
	return page, next, nil
}

// UpdateTenant implements store.Store. fn runs inside the write
// transaction and must not call the store.
func (s *Store) UpdateTenant(ctx context.Context, id string, fn func(*sandbox.Tenant) error) (*sandbox.Tenant, error) {
	defer s.writer()() // one writer at a time, in arrival order
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, rowcodec.Wrap("begin update tenant", err)
	}
	defer tx.Rollback()
	t, err := getTenant(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	if err := fn(t); err != nil {
		return nil, err
	}
	if err := rowcodec.CheckTenantImmutable(id, t.ID); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE tenants SET name = ?, max_sandboxes = ?, created_at = ? WHERE id = ?`,
		t.Name, t.MaxSandboxes, rowcodec.Nanos(t.CreatedAt), id); err != nil {
		return nil, rowcodec.Wrap("update tenant "+id, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, rowcodec.Wrap("commit update tenant "+id, err)
	}
	return t, nil
}

// CreateAPIKey implements store.Store.
func (s *Store) CreateAPIKey(ctx context.Context, k *sandbox.APIKey) error {
	defer s.writer()() // one writer at a time, in arrival order
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return rowcodec.Wrap("begin create API key", err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM api_keys WHERE tenant_id = ?`, k.TenantID).Scan(&n); err != nil {
		return rowcodec.Wrap("count API keys", err)
	}
	if n >= store.MaxAPIKeysPerTenant {
		return rowcodec.TooManyAPIKeys(k.TenantID)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO api_keys (`+keyColumns+`) VALUES (?, ?, ?, ?, ?)`,
		k.ID, k.TenantID, k.Hash, k.Label, rowcodec.Nanos(k.CreatedAt))
	if _, dup := uniqueViolation(err); dup {
		return rowcodec.APIKeyExists(k.ID, err)
	}
	if err != nil {
		return rowcodec.Wrap("create API key "+k.ID, err)
	}
	return rowcodec.Wrap("commit create API key "+k.ID, tx.Commit())
}

// LookupAPIKey implements store.Store.
func (s *Store) LookupAPIKey(ctx context.Context, hash string) (*sandbox.APIKey, error) {
	k, err := scanKey(s.r.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rowcodec.APIKeyNotFound()
	}
	if err != nil {
		return nil, rowcodec.Wrap("look up API key", err)
	}
	return k, nil
}

// GetAPIKey implements store.Store.
func (s *Store) GetAPIKey(ctx context.Context, id string) (*sandbox.APIKey, error) {
	return getKey(ctx, s.r, id)
}

func getKey(ctx context.Context, q queryer, id string) (*sandbox.APIKey, error) {
	k, err := scanKey(q.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rowcodec.APIKeyIDNotFound(id)
	}
	if err != nil {
		return nil, rowcodec.Wrap("get API key "+id, err)
	}
	return k, nil
}

// ListAPIKeys implements store.Store.
func (s *Store) ListAPIKeys(ctx context.Context, tenantID string) ([]*sandbox.APIKey, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id`, tenantID)
	if err != nil {
		return nil, rowcodec.Wrap("list API keys", err)
	}
	defer rows.Close()
	var out []*sandbox.APIKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, rowcodec.Wrap("list API keys", err)
		}
		out = append(out, k)
	}
	return out, rowcodec.Wrap("list API keys", rows.Err())
}

// DeleteAPIKey implements store.Store.
func (s *Store) DeleteAPIKey(ctx context.Context, id string) (*sandbox.APIKey, error) {
	defer s.writer()() // one writer at a time, in arrival order
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, rowcodec.Wrap("begin delete API key", err)
	}
	defer tx.Rollback()
	k, err := getKey(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM api_keys WHERE id = ?`, id); err != nil {
		return nil, rowcodec.Wrap("delete API key "+id, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, rowcodec.Wrap("commit delete API key "+id, err)
	}
	return k, nil
}
