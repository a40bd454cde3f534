package sqlite

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
	defer s.writer()() // one writer at a time, in arrival order
	_, err = s.w.ExecContext(ctx, `INSERT INTO pool_sandboxes (id, pool, spec, created_at) VALUES (?, ?, ?, ?)`,
		p.ID, p.Pool, string(spec), rowcodec.Nanos(p.CreatedAt))
	if _, ok := uniqueViolation(err); ok {
		return rowcodec.SandboxExists(p.ID, err)
	}
	return rowcodec.Wrap("create pool sandbox "+p.ID, err)
}

// ListPoolSandboxes implements store.Store.
func (s *Store) ListPoolSandboxes(ctx context.Context) ([]*store.PoolSandbox, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, pool, spec, created_at FROM pool_sandboxes ORDER BY created_at, id`)
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
	defer s.writer()() // one writer at a time, in arrival order
	res, err := s.w.ExecContext(ctx, `DELETE FROM pool_sandboxes WHERE id = ?`, id)
	if err != nil {
		return rowcodec.Wrap("delete pool sandbox "+id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return rowcodec.PoolSandboxNotFound(id)
	}
	return nil
}

// ClaimPoolSandbox implements store.Store.
func (s *Store) ClaimPoolSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	defer s.writer()() // one writer at a time, in arrival order
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return rowcodec.Wrap("begin claim pool sandbox", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM pool_sandboxes WHERE id = ?`, sb.ID)
	if err != nil {
		return rowcodec.Wrap("claim pool sandbox "+sb.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return rowcodec.PoolSandboxNotFound(sb.ID)
	}
	if err := insertSandbox(ctx, tx, s.hot.insert, sb); err != nil {
		return err
	}
	return rowcodec.Wrap("commit claim pool sandbox", tx.Commit())
}
