package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/sbx-run/sbx/internal/secrets"
	"github.com/sbx-run/sbx/internal/store/internal/rowcodec"
)

var _ secrets.Store = (*Store)(nil)

// PutSecret implements secrets.Store. The writer connection serializes
// writes, so the count and the insert cannot interleave with another put.
func (s *Store) PutSecret(ctx context.Context, sec *secrets.Stored, max int) (bool, error) {
	defer s.writer()() // one writer at a time, in arrival order
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, rowcodec.Wrap("begin put secret", err)
	}
	defer tx.Rollback()
	var created int64
	err = tx.QueryRowContext(ctx, `SELECT created_at FROM secrets WHERE tenant_id = ? AND name = ?`, sec.TenantID, sec.Name).Scan(&created)
	switch {
	case err == nil:
		if _, err := tx.ExecContext(ctx, `UPDATE secrets SET sealed = ?, updated_at = ? WHERE tenant_id = ? AND name = ?`,
			sec.Sealed, rowcodec.Nanos(sec.UpdatedAt), sec.TenantID, sec.Name); err != nil {
			return false, rowcodec.Wrap("put secret "+sec.Name, err)
		}
		sec.CreatedAt = rowcodec.Time(created)
		return false, rowcodec.Wrap("commit put secret", tx.Commit())
	case !errors.Is(err, sql.ErrNoRows):
		return false, rowcodec.Wrap("put secret "+sec.Name, err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM secrets WHERE tenant_id = ?`, sec.TenantID).Scan(&n); err != nil {
		return false, rowcodec.Wrap("count secrets", err)
	}
	if n >= max {
		return false, secrets.TooMany(n, max)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO secrets (tenant_id, name, sealed, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`,
		sec.TenantID, sec.Name, sec.Sealed, rowcodec.Nanos(sec.CreatedAt), rowcodec.Nanos(sec.UpdatedAt)); err != nil {
		return false, rowcodec.Wrap("put secret "+sec.Name, err)
	}
	return true, rowcodec.Wrap("commit put secret", tx.Commit())
}

// GetSecrets implements secrets.Store.
func (s *Store) GetSecrets(ctx context.Context, tenantID string, names []string) ([]*secrets.Stored, error) {
	if len(names) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(names)+1)
	args = append(args, tenantID)
	for _, n := range names {
		args = append(args, n)
	}
	q := `SELECT tenant_id, name, sealed, created_at, updated_at FROM secrets WHERE tenant_id = ? AND name IN (?` +
		strings.Repeat(", ?", len(names)-1) + `)`
	return scanSecrets(s.r.QueryContext(ctx, q, args...))
}

// ListSecrets implements secrets.Store.
func (s *Store) ListSecrets(ctx context.Context, tenantID string) ([]*secrets.Stored, error) {
	return scanSecrets(s.r.QueryContext(ctx, `SELECT tenant_id, name, NULL, created_at, updated_at FROM secrets WHERE tenant_id = ? ORDER BY name`, tenantID))
}

func scanSecrets(rows *sql.Rows, err error) ([]*secrets.Stored, error) {
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
	defer s.writer()() // one writer at a time, in arrival order
	res, err := s.w.ExecContext(ctx, `DELETE FROM secrets WHERE tenant_id = ? AND name = ?`, tenantID, name)
	if err != nil {
		return rowcodec.Wrap("delete secret "+name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return secrets.NotFound(name, -1)
	}
	return nil
}
