package postgres

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
	"github.com/sbx-run/sbx/internal/store/internal/rowcodec"
)

const sandboxColumns = `id, tenant_id, session_id, request_id, state, reason, max_lifetime,
	created_at, started_at, ended_at, expires_at, spec, start, tags, exit, transitions`

func scanSandbox(row pgx.Row) (*sandbox.Sandbox, error) {
	var (
		sb                                   sandbox.Sandbox
		state                                string
		maxLifetime, created, started, ended int64
		expires                              int64
		j                                    rowcodec.SandboxJSON
	)
	if err := row.Scan(&sb.ID, &sb.TenantID, &sb.SessionID, &sb.RequestID, &state, &sb.Reason, &maxLifetime,
		&created, &started, &ended, &expires, &j.Spec, &j.Start, &sb.Tags, &j.Exit, &j.Transitions); err != nil {
		return nil, err
	}
	sb.State = sandbox.State(state)
	sb.MaxLifetime = time.Duration(maxLifetime)
	sb.CreatedAt = rowcodec.Time(created)
	sb.StartedAt = rowcodec.Time(started)
	sb.EndedAt = rowcodec.Time(ended)
	sb.ExpiresAt = rowcodec.Time(expires)
	j.Tags = nil // tags are a text[] column, scanned above
	if err := rowcodec.DecodeSandbox(j, &sb); err != nil {
		return nil, err
	}
	return &sb, nil
}

// CreateSandbox implements store.Store.
func (s *Store) CreateSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	return insertSandbox(ctx, s.pool, sb)
}

// execer is what an insert needs: the pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// insertSandbox writes a new record through e.
func insertSandbox(ctx context.Context, e execer, sb *sandbox.Sandbox) error {
	j, err := rowcodec.EncodeSandbox(sb)
	if err != nil {
		return err
	}
	_, err = e.Exec(ctx, `INSERT INTO sandboxes (`+sandboxColumns+`) VALUES (`+placeholders(16)+`)`,
		sb.ID, sb.TenantID, sb.SessionID, sb.RequestID, string(sb.State), sb.Reason, int64(sb.MaxLifetime),
		rowcodec.Nanos(sb.CreatedAt), rowcodec.Nanos(sb.StartedAt), rowcodec.Nanos(sb.EndedAt), rowcodec.Nanos(sb.ExpiresAt),
		j.Spec, j.Start, sb.Tags, j.Exit, j.Transitions)
	if err != nil {
		return sandboxWriteError(sb, err)
	}
	return nil
}

// sandboxWriteError maps a unique violation to the AlreadyExists it means.
func sandboxWriteError(sb *sandbox.Sandbox, err error) error {
	if constraint, ok := uniqueViolation(err); ok {
		if strings.Contains(constraint, "request") {
			return rowcodec.RequestIDExists(sb.TenantID, sb.RequestID, err)
		}
		return rowcodec.SandboxExists(sb.ID, err)
	}
	return rowcodec.Wrap("write sandbox "+sb.ID, err)
}

// GetSandbox implements store.Store.
func (s *Store) GetSandbox(ctx context.Context, tenantID, id string) (*sandbox.Sandbox, error) {
	return getSandbox(ctx, s.pool, tenantID, id, "")
}

// getSandbox reads one record; lock is "" or a locking clause.
func getSandbox(ctx context.Context, q querier, tenantID, id, lock string) (*sandbox.Sandbox, error) {
	sb, err := scanSandbox(q.QueryRow(ctx, `SELECT `+sandboxColumns+` FROM sandboxes WHERE id = $1 `+lock, id))
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && tenantID != "" && sb.TenantID != tenantID) {
		return nil, rowcodec.SandboxNotFound(id)
	}
	if err != nil {
		return nil, rowcodec.Wrap("get sandbox "+id, err)
	}
	return sb, nil
}

// GetSandboxByRequestID implements store.Store.
func (s *Store) GetSandboxByRequestID(ctx context.Context, tenantID, requestID string) (*sandbox.Sandbox, error) {
	if requestID == "" {
		return nil, rowcodec.RequestNotFound(requestID)
	}
	var a args
	query := `SELECT ` + sandboxColumns + ` FROM sandboxes WHERE request_id = ` + a.add(requestID)
	if tenantID != "" {
		query += ` AND tenant_id = ` + a.add(tenantID)
	}
	sb, err := scanSandbox(s.pool.QueryRow(ctx, query+` LIMIT 1`, a...))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, rowcodec.RequestNotFound(requestID)
	}
	if err != nil {
		return nil, rowcodec.Wrap("get sandbox by request id", err)
	}
	return sb, nil
}

// UpdateSandbox implements store.Store: the row stays locked from read to
// write, so concurrent updates queue instead of overwriting each other.
func (s *Store) UpdateSandbox(ctx context.Context, id string, fn func(*sandbox.Sandbox) error) (*sandbox.Sandbox, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, rowcodec.Wrap("begin update sandbox", err)
	}
	defer tx.Rollback(ctx)
	sb, err := getSandbox(ctx, tx, "", id, "FOR UPDATE")
	if err != nil {
		return nil, err
	}
	oldTenant := sb.TenantID
	if err := fn(sb); err != nil {
		return nil, err
	}
	if err := rowcodec.CheckImmutable("sandbox", id, oldTenant, sb.ID, sb.TenantID); err != nil {
		return nil, err
	}
	j, err := rowcodec.EncodeSandbox(sb)
	if err != nil {
		return nil, err
	}
	_, err = tx.Exec(ctx, `UPDATE sandboxes SET session_id = $1, request_id = $2, state = $3, reason = $4, max_lifetime = $5,
		created_at = $6, started_at = $7, ended_at = $8, expires_at = $9, spec = $10, start = $11, tags = $12, exit = $13,
		transitions = $14 WHERE id = $15`,
		sb.SessionID, sb.RequestID, string(sb.State), sb.Reason, int64(sb.MaxLifetime),
		rowcodec.Nanos(sb.CreatedAt), rowcodec.Nanos(sb.StartedAt), rowcodec.Nanos(sb.EndedAt), rowcodec.Nanos(sb.ExpiresAt),
		j.Spec, j.Start, sb.Tags, j.Exit, j.Transitions, id)
	if err != nil {
		return nil, sandboxWriteError(sb, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, rowcodec.Wrap("commit update sandbox "+id, err)
	}
	return sb, nil
}

// ListSandboxes implements store.Store.
func (s *Store) ListSandboxes(ctx context.Context, f store.SandboxFilter) ([]*sandbox.Sandbox, string, error) {
	q, err := rowcodec.CheckFilter(f)
	if err != nil {
		return nil, "", err
	}
	var a args
	where := []string{`state IN (` + a.list(q.States) + `)`}
	if q.TenantID != "" {
		where = append(where, `tenant_id = `+a.add(q.TenantID))
	}
	if q.SessionID != "" {
		where = append(where, `session_id = `+a.add(q.SessionID))
	}
	if len(q.Tags) > 0 {
		where = append(where, `tags @> `+a.add(q.Tags)+`::text[]`)
	}
	if q.After != nil {
		where = append(where, `(created_at, id) < (`+a.add(q.After.CreatedAt)+`, `+a.add(q.After.ID)+`)`)
	}
	limit := a.add(q.Limit + 1)
	rows, err := s.pool.Query(ctx, `SELECT `+sandboxColumns+` FROM sandboxes WHERE `+strings.Join(where, ` AND `)+
		` ORDER BY created_at DESC, id DESC LIMIT `+limit, a...)
	if err != nil {
		return nil, "", rowcodec.Wrap("list sandboxes", err)
	}
	defer rows.Close()
	var out []*sandbox.Sandbox
	for rows.Next() {
		sb, err := scanSandbox(rows)
		if err != nil {
			return nil, "", rowcodec.Wrap("list sandboxes", err)
		}
		out = append(out, sb)
	}
	if err := rows.Err(); err != nil {
		return nil, "", rowcodec.Wrap("list sandboxes", err)
	}
	page, next := rowcodec.Page(q, out)
	return page, next, nil
}

// CountActive implements store.Store; tenantID "" counts every tenant.
func (s *Store) CountActive(ctx context.Context, tenantID string) (int, error) {
	var a args
	query := `SELECT COUNT(*) FROM sandboxes WHERE state IN (` + a.list(rowcodec.ActiveStates()) + `)`
	if tenantID != "" {
		query += ` AND tenant_id = ` + a.add(tenantID)
	}
	var n int
	if err := s.pool.QueryRow(ctx, query, a...).Scan(&n); err != nil {
		return 0, rowcodec.Wrap("count active sandboxes", err)
	}
	return n, nil
}

// DeleteSandbox implements store.Store.
func (s *Store) DeleteSandbox(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM sandboxes WHERE id = $1`, id)
	if err != nil {
		return rowcodec.Wrap("delete sandbox "+id, err)
	}
	if tag.RowsAffected() == 0 {
		return rowcodec.SandboxNotFound(id)
	}
	return nil
}

// PurgeSandboxes implements store.Store. A terminal record without an end
// time counts as ended when it was created.
func (s *Store) PurgeSandboxes(ctx context.Context, cutoff time.Time) ([]string, error) {
	var a args
	query := `DELETE FROM sandboxes WHERE state IN (` + a.list(rowcodec.TerminalStates()) + `)
		AND (CASE WHEN ended_at <> 0 THEN ended_at ELSE created_at END) < ` + a.add(rowcodec.Nanos(cutoff)) + ` RETURNING id`
	rows, err := s.pool.Query(ctx, query, a...)
	if err != nil {
		return nil, rowcodec.Wrap("purge sandboxes", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, rowcodec.Wrap("purge sandboxes", err)
	}
	return ids, nil
}
