package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
	"github.com/sbx-run/sbx/internal/store/internal/rowcodec"
)

const sandboxColumns = `id, tenant_id, session_id, request_id, state, reason, max_lifetime,
	created_at, started_at, ended_at, expires_at, spec, start, tags, exit, transitions`

func scanSandbox(row interface{ Scan(...any) error }) (*sandbox.Sandbox, error) {
	sb, _, err := scanSandboxJSON(row)
	return sb, err
}

// scanSandboxJSON is scanSandbox that also returns the stored JSON columns.
func scanSandboxJSON(row interface{ Scan(...any) error }) (*sandbox.Sandbox, rowcodec.SandboxJSON, error) {
	var (
		sb                                   sandbox.Sandbox
		state                                string
		maxLifetime, created, started, ended int64
		expires                              int64
		j                                    rowcodec.SandboxJSON
	)
	if err := row.Scan(&sb.ID, &sb.TenantID, &sb.SessionID, &sb.RequestID, &state, &sb.Reason, &maxLifetime,
		&created, &started, &ended, &expires, &j.Spec, &j.Start, &j.Tags, &j.Exit, &j.Transitions); err != nil {
		return nil, j, err
	}
	sb.State = sandbox.State(state)
	sb.MaxLifetime = time.Duration(maxLifetime)
	sb.CreatedAt = rowcodec.Time(created)
	sb.StartedAt = rowcodec.Time(started)
	sb.EndedAt = rowcodec.Time(ended)
	sb.ExpiresAt = rowcodec.Time(expires)
	if err := rowcodec.DecodeSandbox(j, &sb); err != nil {
		return nil, j, err
	}
	return &sb, j, nil
}

// CreateSandbox implements store.Store.
func (s *Store) CreateSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	defer s.writer()() // one writer at a time, in arrival order
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return rowcodec.Wrap("begin create sandbox", err)
	}
	defer tx.Rollback()
	if err := insertSandbox(ctx, tx, s.hot.insert, sb); err != nil {
		return err
	}
	return rowcodec.Wrap("commit create sandbox", tx.Commit())
}

// insertSandbox writes a new record and its tags in tx; ins is the
// prepared insert (hotStmts).
func insertSandbox(ctx context.Context, tx *sql.Tx, ins *sql.Stmt, sb *sandbox.Sandbox) error {
	j, err := rowcodec.EncodeSandbox(sb)
	if err != nil {
		return err
	}
	_, err = tx.StmtContext(ctx, ins).ExecContext(ctx,
		sb.ID, sb.TenantID, sb.SessionID, sb.RequestID, string(sb.State), sb.Reason, int64(sb.MaxLifetime),
		rowcodec.Nanos(sb.CreatedAt), rowcodec.Nanos(sb.StartedAt), rowcodec.Nanos(sb.EndedAt), rowcodec.Nanos(sb.ExpiresAt),
		string(j.Spec), string(j.Start), string(j.Tags), textOrNull(j.Exit), string(j.Transitions))
	if err != nil {
		return sandboxWriteError(sb, err)
	}
	return insertTags(ctx, tx, sb.ID, sb.Tags)
}

// sandboxWriteError maps a unique violation to the AlreadyExists it means.
func sandboxWriteError(sb *sandbox.Sandbox, err error) error {
	if cols, ok := uniqueViolation(err); ok {
		if strings.Contains(cols, "request_id") {
			return rowcodec.RequestIDExists(sb.TenantID, sb.RequestID, err)
		}
		return rowcodec.SandboxExists(sb.ID, err)
	}
	return rowcodec.Wrap("write sandbox "+sb.ID, err)
}

func insertTags(ctx context.Context, tx *sql.Tx, id string, tags []string) error {
	for _, t := range tags {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO sandbox_tags (sandbox_id, tag) VALUES (?, ?)`, id, t); err != nil {
			return rowcodec.Wrap("write tags of sandbox "+id, err)
		}
	}
	return nil
}

// GetSandbox implements store.Store.
func (s *Store) GetSandbox(ctx context.Context, tenantID, id string) (*sandbox.Sandbox, error) {
	sb, err := scanSandbox(s.hot.getR.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) || (err == nil && tenantID != "" && sb.TenantID != tenantID) {
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
	query := `SELECT ` + sandboxColumns + ` FROM sandboxes WHERE request_id = ?`
	args := []any{requestID}
	if tenantID != "" {
		query += ` AND tenant_id = ?`
		args = append(args, tenantID)
	}
	sb, err := scanSandbox(s.r.QueryRowContext(ctx, query+` LIMIT 1`, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rowcodec.RequestNotFound(requestID)
	}
	if err != nil {
		return nil, rowcodec.Wrap("get sandbox by request id", err)
	}
	return sb, nil
}

// UpdateSandbox implements store.Store. fn runs inside the write
// transaction and must not call the store. Only the columns fn changed are
// written: SQLite then leaves the indexes of the others alone, which keeps
// a state change to a few pages of WAL.
func (s *Store) UpdateSandbox(ctx context.Context, id string, fn func(*sandbox.Sandbox) error) (*sandbox.Sandbox, error) {
	defer s.writer()() // one writer at a time, in arrival order
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, rowcodec.Wrap("begin update sandbox", err)
	}
	defer tx.Rollback()
	sb, oldJ, err := scanSandboxJSON(tx.StmtContext(ctx, s.hot.getW).QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rowcodec.SandboxNotFound(id)
	}
	if err != nil {
		return nil, rowcodec.Wrap("get sandbox "+id, err)
	}
	old := *sb
	old.Tags = slices.Clone(sb.Tags)
	if err := fn(sb); err != nil {
		return nil, err
	}
	if err := rowcodec.CheckImmutable("sandbox", id, old.TenantID, sb.ID, sb.TenantID); err != nil {
		return nil, err
	}
	j, err := rowcodec.EncodeSandbox(sb)
	if err != nil {
		return nil, err
	}
	var set []string
	var args []any
	col := func(name string, changed bool, v any) {
		if changed {
			set = append(set, name+" = ?")
			args = append(args, v)
		}
	}
	col("session_id", sb.SessionID != old.SessionID, sb.SessionID)
	col("request_id", sb.RequestID != old.RequestID, sb.RequestID)
	col("state", sb.State != old.State, string(sb.State))
	col("reason", sb.Reason != old.Reason, sb.Reason)
	col("max_lifetime", sb.MaxLifetime != old.MaxLifetime, int64(sb.MaxLifetime))
	col("created_at", !sb.CreatedAt.Equal(old.CreatedAt), rowcodec.Nanos(sb.CreatedAt))
	col("started_at", !sb.StartedAt.Equal(old.StartedAt), rowcodec.Nanos(sb.StartedAt))
	col("ended_at", !sb.EndedAt.Equal(old.EndedAt), rowcodec.Nanos(sb.EndedAt))
	col("expires_at", !sb.ExpiresAt.Equal(old.ExpiresAt), rowcodec.Nanos(sb.ExpiresAt))
	col("spec", string(j.Spec) != string(oldJ.Spec), string(j.Spec))
	col("start", string(j.Start) != string(oldJ.Start), string(j.Start))
	col("tags", string(j.Tags) != string(oldJ.Tags), string(j.Tags))
	col("exit", string(j.Exit) != string(oldJ.Exit) || (j.Exit == nil) != (oldJ.Exit == nil), textOrNull(j.Exit))
	col("transitions", string(j.Transitions) != string(oldJ.Transitions), string(j.Transitions))
	if len(set) > 0 {
		args = append(args, id)
		if _, err := tx.ExecContext(ctx, `UPDATE sandboxes SET `+strings.Join(set, ", ")+` WHERE id = ?`, args...); err != nil {
			return nil, sandboxWriteError(sb, err)
		}
	}
	if !slices.Equal(old.Tags, sb.Tags) {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sandbox_tags WHERE sandbox_id = ?`, id); err != nil {
			return nil, rowcodec.Wrap("rewrite tags of sandbox "+id, err)
		}
		if err := insertTags(ctx, tx, id, sb.Tags); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
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
	var where []string
	var args []any
	where = append(where, `state IN (`+placeholders(len(q.States))+`)`)
	args = append(args, anys(q.States)...)
	if q.TenantID != "" {
		where = append(where, `tenant_id = ?`)
		args = append(args, q.TenantID)
	}
	if q.SessionID != "" {
		where = append(where, `session_id = ?`)
		args = append(args, q.SessionID)
	}
	for _, t := range q.Tags {
		where = append(where, `EXISTS (SELECT 1 FROM sandbox_tags t WHERE t.sandbox_id = sandboxes.id AND t.tag = ?)`)
		args = append(args, t)
	}
	if q.After != nil {
		where = append(where, `(created_at < ? OR (created_at = ? AND id < ?))`)
		args = append(args, q.After.CreatedAt, q.After.CreatedAt, q.After.ID)
	}
	args = append(args, q.Limit+1)
	rows, err := s.r.QueryContext(ctx, `SELECT `+sandboxColumns+` FROM sandboxes WHERE `+strings.Join(where, ` AND `)+
		` ORDER BY created_at DESC, id DESC LIMIT ?`, args...)
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
	active := rowcodec.ActiveStates()
	query := `SELECT COUNT(*) FROM sandboxes WHERE state IN (` + placeholders(len(active)) + `)`
	args := anys(active)
	if tenantID != "" {
		query += ` AND tenant_id = ?`
		args = append(args, tenantID)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		return 0, rowcodec.Wrap("count active sandboxes", err)
	}
	return n, nil
}

// DeleteSandbox implements store.Store.
func (s *Store) DeleteSandbox(ctx context.Context, id string) error {
	defer s.writer()() // one writer at a time, in arrival order
	res, err := s.hot.del.ExecContext(ctx, id)
	if err != nil {
		return rowcodec.Wrap("delete sandbox "+id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return rowcodec.Wrap("delete sandbox "+id, err)
	} else if n == 0 {
		return rowcodec.SandboxNotFound(id)
	}
	return nil
}

// PurgeSandboxes implements store.Store. A terminal record without an end
// time counts as ended when it was created.
func (s *Store) PurgeSandboxes(ctx context.Context, cutoff time.Time) ([]string, error) {
	terminal := rowcodec.TerminalStates()
	args := append(anys(terminal), rowcodec.Nanos(cutoff))
	defer s.writer()() // one writer at a time, in arrival order
	rows, err := s.w.QueryContext(ctx, `DELETE FROM sandboxes WHERE state IN (`+placeholders(len(terminal))+`)
		AND (CASE WHEN ended_at <> 0 THEN ended_at ELSE created_at END) < ? RETURNING id`, args...)
	if err != nil {
		return nil, rowcodec.Wrap("purge sandboxes", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, rowcodec.Wrap("purge sandboxes", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, rowcodec.Wrap("purge sandboxes", err)
	}
	return ids, nil
}
