package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/sbx-run/sbx/internal/secrets"
	"github.com/sbx-run/sbx/internal/store/internal/rowcodec"
)

var _ secrets.Store = (*Store)(nil)

// secretsLock is the first key of the per-tenant advisory lock that
// serializes PutSecret's count and insert across replicas ("sbxs").
const secretsLock = 0x73627873

// PutSecret implements secrets.Store.
func (s *Store) PutSecret(ctx context.Context, sec *secrets.Stored, max int) (bool, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, rowcodec.Wrap("begin put secret", err)
	}
	defer tx.Rollback(ctx)
	// Two puts of new names for one tenant must not both pass the count.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, int32(secretsLock), sec.TenantID); err != nil {
		return false, rowcodec.Wrap("lock secrets", err)
	}
	var created int64
	err = tx.QueryRow(ctx, `UPDATE secrets SET sealed = $1, updated_at = $2 WHERE tenant_id = $3 AND name = $4 RETURNING created_at`,
		sec.Sealed, rowcodec.Nanos(sec.UpdatedAt), sec.TenantID, sec.Name).Scan(&created)
	switch {
	case err == nil:
		sec.CreatedAt = rowcodec.Time(created)
		return false, rowcodec.Wrap("commit put secret", tx.Commit(ctx))
	case !errors.Is(err, pgx.ErrNoRows):
		return false, rowcodec.Wrap("put secret "+sec.Name, err)
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM secrets WHERE tenant_id = $1`, sec.TenantID).Scan(&n); err != nil {
		return false, rowcodec.Wrap("count secrets", err)
	}
	if n >= max {
		return false, secrets.TooMany(n, max)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO secrets (tenant_id, name, sealed, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)`,
		sec.TenantID, sec.Name, sec.Sealed, rowcodec.Nanos(sec.CreatedAt), rowcodec.Nanos(sec.UpdatedAt)); err != nil {
		return false, rowcodec.Wrap("put secret "+sec.Name, err)
	}
	return true, rowcodec.Wrap("commit put secret", tx.Commit(ctx))
}

// GetSecrets implements secrets.Store.
func (s *Store) GetSecrets(ctx context.Context, tenantID string, names []string) ([]*secrets.Stored, error) {
	if len(names) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT tenant_id, name, sealed, created_at, updated_at FROM secrets WHERE tenant_id = $1 AND name = ANY($2)`, tenantID, names)
	return scanSecrets(rows, err)
}

// ListSecrets implements secrets.Store.
func (s *Store) ListSecrets(ctx context.Context, tenantID string) ([]*secrets.Stored, error) {
	rows, err := s.pool.Query(ctx, `SELECT tenant_id, name, NULL::bytea, created_at, updated_at FROM secrets WHERE tenant_id = $1 ORDER BY name`, tenantID)
	return scanSecrets(rows, err)
}

func scanSecrets(rows pgx.Rows, err error) ([]*secrets.Stored, error) {
	if err != nil {
		return nil, rowcodec.Wrap("read secrets", err)
	}
	defer rows.Close()
	var out []*secrets.Stored
	for rows.Next() {
		var (
			sec              secrets.Stored
			created, updated int64
		)
		if err := rows.Scan(&sec.TenantID, &sec.Name, &sec.Sealed, &created, &updated); err != nil {
			return nil, rowcodec.Wrap("read secrets", err)
		}
		sec.CreatedAt, sec.UpdatedAt = rowcodec.Time(created), rowcodec.Time(updated)
		out = append(out, &sec)
	}
	return out, rowcodec.Wrap("read secrets", rows.Err())
}

// DeleteSecret implements secrets.Store.
func (s *Store) DeleteSecret(ctx context.Context, tenantID, name string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM secrets WHERE tenant_id = $1 AND name = $2`, tenantID, name)
	if err != nil {
		return rowcodec.Wrap("delete secret "+name, err)
	}
	if tag.RowsAffected() == 0 {
		return secrets.NotFound(name, -1)
	}
	return nil
}
