// Package sqlite is sbx's embedded store: one SQLite file in the data dir,
// through the pure-Go modernc.org/sqlite driver so the server binary stays
// static.
//
// The file is in WAL mode, so reads never wait for the writer. Every write
// goes through one dedicated connection whose transactions start with BEGIN
// IMMEDIATE: writers queue in Go instead of racing for SQLite's lock, so a
// write never fails with SQLITE_BUSY; the busy timeout covers the rest
// (checkpoints, another process opening the file). synchronous=NORMAL keeps
// every committed transaction across a crash of the server (kill -9); only an
// OS crash or power loss can roll back the last commits.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// busyTimeoutMS is how long a statement waits for a lock held elsewhere.
const busyTimeoutMS = 10000

// maxReaders bounds the read connections; WAL lets them run in parallel.
const maxReaders = 8

// Store is a store.Store on one SQLite file.
type Store struct {
	w *sql.DB // exactly one connection: every write, serialized
	// wq admits writers to w one at a time in arrival order (see writer).
	wq        chan struct{}
	r         *sql.DB // read-only connections
	hot       *hotStmts
	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path and brings its
// schema up to date. The file is created readable only by its owner, since
// records hold sandbox environments.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "database path %q must be non-empty and contain no '?' or '#': choose another data dir", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, sandbox.Errorf(sandbox.ErrFailedPrecondition, sandbox.ReasonInvalidPath, "create database file %s (check the data dir exists and is writable): %w", path, err)
	}
	f.Close()

	common := "_busy_timeout=" + strconv.Itoa(busyTimeoutMS)
	w, err := sql.Open("sqlite", path+"?"+common+"&_journal_mode=WAL&_synchronous=NORMAL&_foreign_keys=1&_txlock=immediate")
	if err != nil {
		return nil, sandbox.Internal("open database %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", path+"?"+common+"&_query_only=1")
	if err != nil {
		w.Close()
		return nil, sandbox.Internal("open database %s: %w", path, err)
	}
	r.SetMaxOpenConns(maxReaders)
	r.SetMaxIdleConns(maxReaders)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, sandbox.Internal("open database %s for reading: %w", path, err)
	}
	hot, err := prepareHot(ctx, w, r)
	if err != nil {
		w.Close()
		r.Close()
		return nil, sandbox.Internal("open database %s: prepare statements: %w", path, err)
	}
	return &Store{w: w, r: r, hot: hot, wq: make(chan struct{}, 1)}, nil
}

// Close closes the database; it is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = errors.Join(s.hot.close(), s.r.Close(), s.w.Close())
	})
	return s.closeErr
}

// writer waits for the writer connection's turn and returns the function
// that ends it. database/sql hands a freed connection to a random waiter,
// so with one connection and many writers some waited for seconds under
// load (a warm-pool claim behind hundreds of others); a channel's waiters
// are served first come, first served.
func (s *Store) writer() func() {
	s.wq <- struct{}{}
	return func() { <-s.wq }
}

// migrate applies the embedded migrations newer than the file's
// schema_version, each in its own transaction.
func migrate(ctx context.Context, db *sql.DB) error {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return sandbox.Internal("list migrations: %w", err)
	}
	type migration struct {
		version int
		file    string
	}
	var ms []migration
	for _, f := range files {
		base := strings.TrimPrefix(f, "migrations/")
		v, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return sandbox.Internal("migration %s has no numeric version prefix", f)
		}
		ms = append(ms, migration{v, f})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })

	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return sandbox.Internal("create schema_version: %w", err)
	}
	for _, m := range ms {
		if err := applyMigration(ctx, db, m.version, m.file, ms[len(ms)-1].version); err != nil {
			return err
		}
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, version int, file string, latest int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return sandbox.Internal("begin migration %d: %w", version, err)
	}
	defer tx.Rollback()
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&current); err != nil {
		return sandbox.Internal("read schema version: %w", err)
	}
	if current > latest {
		return sandbox.FailedPrecondition(sandbox.ReasonInternal, "schema version %d is newer than this sbx knows (%d): run a newer sbx", current, latest)
	}
	if current >= version {
		return nil
	}
	body, err := migrations.ReadFile(file)
	if err != nil {
		return sandbox.Internal("read migration %s: %w", file, err)
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return sandbox.Internal("apply migration %s: %w", file, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, version); err != nil {
		return sandbox.Internal("record schema version %d: %w", version, err)
	}
	if err := tx.Commit(); err != nil {
		return sandbox.Internal("commit migration %d: %w", version, err)
	}
	return nil
}

// uniqueViolation reports whether err is a UNIQUE or PRIMARY KEY violation,
// and the "table.column, ..." list SQLite names in its message.
func uniqueViolation(err error) (columns string, ok bool) {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return "", false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
	default:
		return "", false
	}
	msg := se.Error()
	if i := strings.Index(msg, "constraint failed: "); i >= 0 {
		return msg[i+len("constraint failed: "):], true
	}
	return msg, true
}

// queryer is what reads need: the reader pool or a write transaction.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// placeholders returns "?, ?, ..." for n values.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// anys converts strings to query arguments.
func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// textOrNull stores nil as NULL and anything else as TEXT.
func textOrNull(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}
