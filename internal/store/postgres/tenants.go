package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
	"github.com/sbx-run/sbx/internal/store/internal/rowcodec"
)

const (
	tenantColumns = `id, name, max_sandboxes, created_at`
	keyColumns    = `id, tenant_id, hash, label, created_at`

	// adminLock is the first key of the advisory locks that serialize the
	// count and the insert of CreateTenant (second key 0) and CreateAPIKey
	// (second key: the tenant's hash) across replicas ("sbxa").
	adminLock = 0x73627861
)

func scanTenant(row pgx.Row) (*sandbox.Tenant, error) {
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

func scanKey(row pgx.Row) (*sandbox.APIKey, error) {
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

// CreateTenant implements store.Store.
func (s *Store) CreateTenant(ctx context.Context, t *sandbox.Tenant) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return rowcodec.Wrap("begin create tenant", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, 0)`, int32(adminLock)); err != nil {
		return rowcodec.Wrap("lock tenants", err)
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM tenants`).Scan(&n); err != nil {
		return rowcodec.Wrap("count tenants", err)
	}
	if n >= store.MaxTenants {
		return rowcodec.TooManyTenants()
	}
	_, err = tx.Exec(ctx, `INSERT INTO tenants (`+tenantColumns+`) VALUES ($1, $2, $3, $4)`,
		t.ID, t.Name, t.MaxSandboxes, rowcodec.Nanos(t.CreatedAt))
	if _, dup := uniqueViolation(err); dup {
		return rowcodec.TenantExists(t.ID, err)
	}
	if err != nil {
		return rowcodec.Wrap("create tenant "+t.ID, err)
	}
	return rowcodec.Wrap("commit create tenant "+t.ID, tx.Commit(ctx))
}

// GetTenant implements store.Store.
func (s *Store) GetTenant(ctx context.Context, id string) (*sandbox.Tenant, error) {
	return getTenant(ctx, s.pool, id, "")
}

func getTenant(ctx context.Context, q querier, id, lock string) (*sandbox.Tenant, error) {
	t, err := scanTenant(q.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id = $1 `+lock, id))
	if errors.Is(err, pgx.ErrNoRows) {
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
	rows, err := s.pool.Query(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id > $1 ORDER BY id LIMIT $2`, p.After, p.Size+1)
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
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, rowcodec.Wrap("begin update tenant", err)
	}
	defer tx.Rollback(ctx)
	t, err := getTenant(ctx, tx, id, "FOR UPDATE")
	if err != nil {
		return nil, err
	}
	if err := fn(t); err != nil {
		return nil, err
	}
	if err := rowcodec.CheckTenantImmutable(id, t.ID); err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE tenants SET name = $1, max_sandboxes = $2, created_at = $3 WHERE id = $4`,
		t.Name, t.MaxSandboxes, rowcodec.Nanos(t.CreatedAt), id); err != nil {
		return nil, rowcodec.Wrap("update tenant "+id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, rowcodec.Wrap("commit update tenant "+id, err)
	}
	return t, nil
}

// CreateAPIKey implements store.Store.
func (s *Store) CreateAPIKey(ctx context.Context, k *sandbox.APIKey) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return rowcodec.Wrap("begin create API key", err)
	}
	defer tx.Rollback(ctx)
	// Two creates for one tenant must not both pass the count.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, int32(adminLock), k.TenantID); err != nil {
		return rowcodec.Wrap("lock API keys", err)
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE tenant_id = $1`, k.TenantID).Scan(&n); err != nil {
		return rowcodec.Wrap("count API keys", err)
	}
	if n >= store.MaxAPIKeysPerTenant {
		return rowcodec.TooManyAPIKeys(k.TenantID)
	}
	_, err = tx.Exec(ctx, `INSERT INTO api_keys (`+keyColumns+`) VALUES ($1, $2, $3, $4, $5)`,
		k.ID, k.TenantID, k.Hash, k.Label, rowcodec.Nanos(k.CreatedAt))
	if _, dup := uniqueViolation(err); dup {
		return rowcodec.APIKeyExists(k.ID, err)
	}
	if err != nil {
		return rowcodec.Wrap("create API key "+k.ID, err)
	}
	return rowcodec.Wrap("commit create API key "+k.ID, tx.Commit(ctx))
}

// LookupAPIKey implements store.Store.
func (s *Store) LookupAPIKey(ctx context.Context, hash string) (*sandbox.APIKey, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE hash = $1`, hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, rowcodec.APIKeyNotFound()
	}
	if err != nil {
		return nil, rowcodec.Wrap("look up API key", err)
	}
	return k, nil
}

// GetAPIKey implements store.Store.
func (s *Store) GetAPIKey(ctx context.Context, id string) (*sandbox.APIKey, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, rowcodec.APIKeyIDNotFound(id)
	}
	if err != nil {
		return nil, rowcodec.Wrap("get API key "+id, err)
	}
	return k, nil
}

// ListAPIKeys implements store.Store.
func (s *Store) ListAPIKeys(ctx context.Context, tenantID string) ([]*sandbox.APIKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id`, tenantID)
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
	k, err := scanKey(s.pool.QueryRow(ctx, `DELETE FROM api_keys WHERE id = $1 RETURNING `+keyColumns, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, rowcodec.APIKeyIDNotFound(id)
	}
	if err != nil {
		return nil, rowcodec.Wrap("delete API key "+id, err)
	}
	return k, nil
}
