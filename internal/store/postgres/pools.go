package postgres

import (
	"context"
	"encoding/json"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
	"github.com/sbx-run/sbx/internal/store/internal/rowcodec"
)

// CreatePoolSandbox implements store.Store.
func (s *Store) CreatePoolSandbox(ctx context.Context, p *store.PoolSandbox) error {
	spec, err := json.Marshal(p.Spec)
	if err != nil {
		return sandbox.Internal("encode spec of pool sandbox %s: %w", p.ID, err)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO pool_sandboxes (id, pool, spec, created_at) VALUES ($1, $2, $3, $4)`,
		p.ID, p.Pool, spec, rowcodec.Nanos(p.CreatedAt))
	if _, ok := uniqueViolation(err); ok {
		return rowcodec.SandboxExists(p.ID, err)
	}
	return rowcodec.Wrap("create pool sandbox "+p.ID, err)
}

// ListPoolSandboxes implements store.Store.
func (s *Store) ListPoolSandboxes(ctx context.Context) ([]*store.PoolSandbox, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, pool, spec, created_at FROM pool_sandboxes ORDER BY created_at, id`)
	if err != nil {
		return nil, rowcodec.Wrap("list pool sandboxes", err)
	}
	defer rows.Close()
	var out []*store.PoolSandbox
	for rows.Next() {
		var (
			p       store.PoolSandbox
			spec    []byte
			created int64
		)
		if err := rows.Scan(&p.ID, &p.Pool, &spec, &created); err != nil {
			return nil, rowcodec.Wrap("list pool sandboxes", err)
		}
		if err := rowcodec.DecodeJSON("spec of pool sandbox "+p.ID, spec, &p.Spec); err != nil {
			return nil, err
		}
		p.CreatedAt = rowcodec.Time(created)
		out = append(out, &p)
	}
	return out, rowcodec.Wrap("list pool sandboxes", rows.Err())
}

// DeletePoolSandbox implements store.Store.
func (s *Store) DeletePoolSandbox(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM pool_sandboxes WHERE id = $1`, id)
	if err != nil {
		return rowcodec.Wrap("delete pool sandbox "+id, err)
	}
	if tag.RowsAffected() == 0 {
		return rowcodec.PoolSandboxNotFound(id)
	}
	return nil
}

// ClaimPoolSandbox implements store.Store. The DELETE locks the pool row,
// so of two replicas claiming one sandbox only one sees a row affected.
func (s *Store) ClaimPoolSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return rowcodec.Wrap("begin claim pool sandbox", err)
	}
	defer tx.Rollback(ctx)
	tag, err := tx.Exec(ctx, `DELETE FROM pool_sandboxes WHERE id = $1`, sb.ID)
	if err != nil {
		return rowcodec.Wrap("claim pool sandbox "+sb.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return rowcodec.PoolSandboxNotFound(sb.ID)
	}
	if err := insertSandbox(ctx, tx, sb); err != nil {
		return err
	}
	return rowcodec.Wrap("commit claim pool sandbox", tx.Commit(ctx))
}
