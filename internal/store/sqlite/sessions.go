package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store/internal/rowcodec"
)

// CreateSession implements store.Store.
func (s *Store) CreateSession(ctx context.Context, sess *sandbox.Session) error {
	defaults, err := rowcodec.EncodeJSON("session defaults", sess.Defaults)
	if err != nil {
		return err
	}
	defer s.writer()() // one writer at a time, in arrival order
	_, err = s.w.ExecContext(ctx, `INSERT INTO sessions (`+rowcodec.SessionColumns+`) VALUES (`+placeholders(8)+`)`,
		sess.ID, sess.TenantID, string(defaults), int64(sess.Lease), rowcodec.Nanos(sess.CreatedAt),
		rowcodec.Nanos(sess.LastHeartbeat), rowcodec.Nanos(sess.ClosedAt), sess.CloseReason)
	if _, dup := uniqueViolation(err); dup {
		return rowcodec.SessionExists(sess.ID, err)
	}
	return rowcodec.Wrap("create session "+sess.ID, err)
}

// GetSession implements store.Store.
func (s *Store) GetSession(ctx context.Context, tenantID, id string) (*sandbox.Session, error) {
	return getSession(ctx, s.r, tenantID, id)
}

func getSession(ctx context.Context, q queryer, tenantID, id string) (*sandbox.Session, error) {
	sess, err := rowcodec.ScanSession(q.QueryRowContext(ctx, `SELECT `+rowcodec.SessionColumns+` FROM sessions WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) || (err == nil && tenantID != "" && sess.TenantID != tenantID) {
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
	defer s.writer()() // one writer at a time, in arrival order
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, rowcodec.Wrap("begin update session", err)
	}
	defer tx.Rollback()
	sess, err := getSession(ctx, tx, "", id)
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
	if _, err := tx.ExecContext(ctx, `UPDATE sessions SET defaults = ?, lease = ?, created_at = ?, last_heartbeat = ?,
		closed_at = ?, close_reason = ? WHERE id = ?`,
		string(defaults), int64(sess.Lease), rowcodec.Nanos(sess.CreatedAt), rowcodec.Nanos(sess.LastHeartbeat),
		rowcodec.Nanos(sess.ClosedAt), sess.CloseReason, id); err != nil {
		return nil, rowcodec.Wrap("update session "+id, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, rowcodec.Wrap("commit update session "+id, err)
	}
	return sess, nil
}

// ListSessions implements store.Store: open sessions, oldest first.
func (s *Store) ListSessions(ctx context.Context, tenantID string) ([]*sandbox.Session, error) {
	query := `SELECT ` + rowcodec.SessionColumns + ` FROM sessions WHERE closed_at = 0`
	var args []any
	if tenantID != "" {
		query += ` AND tenant_id = ?`
		args = append(args, tenantID)
	}
	rows, err := s.r.QueryContext(ctx, query+` ORDER BY created_at, id`, args...)
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
