// Package postgres is sbx's store for deployments with several server
// replicas: PostgreSQL through pgx's connection pool. The schema follows the
// sqlite store's (integer nanosecond times, JSON nested parts), with tags
// as a text[] behind a GIN index. Updates lock their row (SELECT ... FOR
// UPDATE), so concurrent read-modify-writes from any replica never lose one.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock key that serializes migrations when
// several replicas start at once ("sbx" in ASCII).
const migrationLock = 0x736278

// Store is a store.Store on a PostgreSQL database.
type Store struct {
	pool      *pgxpool.Pool
	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at dsn (a postgres:// URL or a key=value
// string) and brings its schema up to date.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The DSN may hold a password; do not echo it.
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "the PostgreSQL DSN cannot be parsed: write it as postgres://user:password@host:port/db")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, sandbox.Unavailable(sandbox.ReasonInternal, "connect to PostgreSQL at %s: %w", cfg.ConnConfig.Host, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, sandbox.Unavailable(sandbox.ReasonInternal, "connect to PostgreSQL at %s:%d (check that it runs and the DSN is right): %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool}, nil
}

// Close closes the pool; it is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.Close)
	return nil
}

// migrate applies the embedded migrations newer than schema_version in one
// transaction, under an advisory lock.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return sandbox.Internal("list migrations: %w", err)
	}
	versions := map[int]string{}
	var order []int
	for _, f := range files {
		v, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(f, "migrations/"), "_", 2)[0])
		if err != nil {
			return sandbox.Internal("migration %s has no numeric version prefix", f)
		}
		versions[v] = f
		order = append(order, v)
	}
	sort.Ints(order)
	latest := order[len(order)-1]

	tx, err := pool.Begin(ctx)
	if err != nil {
		return sandbox.Internal("begin migrations: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
		return sandbox.Internal("lock migrations: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return sandbox.Internal("create schema_version: %w", err)
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&current); err != nil {
		return sandbox.Internal("read schema version: %w", err)
	}
	if current > latest {
		return sandbox.FailedPrecondition(sandbox.ReasonInternal, "schema version %d is newer than this sbx knows (%d): run a newer sbx", current, latest)
	}
	for _, v := range order {
		if v <= current {
			continue
		}
		body, err := migrations.ReadFile(versions[v])
		if err != nil {
			return sandbox.Internal("read migration %s: %w", versions[v], err)
		}
		// No arguments: pgx uses the simple protocol, which runs every statement of the file.
		if _, err := tx.Exec(ctx, string(body)); err != nil {
			return sandbox.Internal("apply migration %s: %w", versions[v], err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES ($1)`, v); err != nil {
			return sandbox.Internal("record schema version %d: %w", v, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return sandbox.Internal("commit migrations: %w", err)
	}
	return nil
}

// uniqueViolation reports whether err is a unique violation, and the name
// of the constraint (or unique index) that failed.
func uniqueViolation(err error) (constraint string, ok bool) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return pe.ConstraintName, true
	}
	return "", false
}

// querier is what reads need: the pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// args builds a positional argument list and its $n placeholders.
type args []any

// add appends v and returns its placeholder.
func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// list appends every value and returns "$i, $j, ...".
func (a *args) list(vs []string) string {
	ph := make([]string, len(vs))
	for i, v := range vs {
		ph[i] = a.add(v)
	}
	return strings.Join(ph, ", ")
}

// placeholders returns "$1, ..., $n".
func placeholders(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i)
	}
	return b.String()
}
