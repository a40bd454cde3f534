package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store/internal/rowcodec"
)

// CreateSession implements store.Store.
func (s *Store) CreateSession(ctx context.Context, sess *sandbox.Session) error {
	defaults, err := rowcodec.EncodeJSON("session defaults", sess.Defaults)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO sessions (`+rowcodec.SessionColumns+`) VALUES (`+placeholders(8)+`)`,
		sess.ID, sess.TenantID, defaults, int64(sess.Lease), rowcodec.Nanos(sess.CreatedAt),
		rowcodec.Nanos(sess.LastHeartbeat), rowcodec.Nanos(sess.ClosedAt), sess.CloseReason)
	if _, dup := uniqueViolation(err); dup {
		return rowcodec.SessionExists(sess.ID, err)
	}
	return rowcodec.Wrap("create session "+sess.ID, err)
}

// GetSession implements store.Store.
func (s *Store) GetSession(ctx context.Context, tenantID, id string) (*sandbox.Session, error) {
	return getSession(ctx, s.pool, tenantID, id, "")
}

func getSession(ctx context.Context, q querier, tenantID, id, lock string) (*sandbox.Session, error) {
	sess, err := rowcodec.ScanSession(q.QueryRow(ctx, `SELECT `+rowcodec.SessionColumns+` FROM sessions WHERE id = $1 `+lock, id))
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && tenantID != "" && sess.TenantID != tenantID) {
		return nil, rowcodec.SessionNotFound(id)
	}
	if err != nil {
		return nil, rowcodec.Wrap("get session "+id, err)
	}
	return sess, nil
}

// UpdateSession implements store.Store. fn runs inside the write
// transaction and must not call the store.
func (s *Store) UpdateSession(ctx context.Context, id string, fn func(*sandbox.Session) error) (*sandbox.Session, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, rowcodec.Wrap("begin update session", err)
	}
	defer tx.Rollback(ctx)
	sess, err := getSession(ctx, tx, "", id, "FOR UPDATE")
	if err != nil {
		return nil, err
	}
	oldTenant := sess.TenantID
	if err := fn(sess); err != nil {
		return nil, err
	}
	if err := rowcodec.CheckImmutable("session", id, oldTenant, sess.ID, sess.TenantID); err != nil {
		return nil, err
	}
	defaults, err := rowcodec.EncodeJSON("session defaults", sess.Defaults)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `UPDATE sessions SET defaults = $1, lease = $2, created_at = $3, last_heartbeat = $4,
		closed_at = $5, close_reason = $6 WHERE id = $7`,
		defaults, int64(sess.Lease), rowcodec.Nanos(sess.CreatedAt), rowcodec.Nanos(sess.LastHeartbeat),
		rowcodec.Nanos(sess.ClosedAt), sess.CloseReason, id); err != nil {
		return nil, rowcodec.Wrap("update session "+id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, rowcodec.Wrap("commit update session "+id, err)
	}
	return sess, nil
}

// ListSessions implements store.Store: open sessions, oldest first.
func (s *Store) ListSessions(ctx context.Context, tenantID string) ([]*sandbox.Session, error) {
	query := `SELECT ` + rowcodec.SessionColumns + ` FROM sessions WHERE closed_at = 0`
	var a args
	if tenantID != "" {
		query += ` AND tenant_id = ` + a.add(tenantID)
	}
	rows, err := s.pool.Query(ctx, query+` ORDER BY created_at, id`, a...)
	if err != nil {
		return nil, rowcodec.Wrap("list sessions", err)
	}
	defer rows.Close()
	var out []*sandbox.Session
	for rows.Next() {
		sess, err := rowcodec.ScanSession(rows)
		if err != nil {
			return nil, rowcodec.Wrap("list sessions", err)
		}
		out = append(out, sess)
	}
	return out, rowcodec.Wrap("list sessions", rows.Err())
}
