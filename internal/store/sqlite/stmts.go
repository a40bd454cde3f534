package sqlite

import (
	"context"
	"database/sql"
	"errors"
)

// The statements of every sandbox's life, prepared once (hotStmts).
var (
	selectSandboxSQL = `SELECT ` + sandboxColumns + ` FROM sandboxes WHERE id = ?`
	insertSandboxSQL = `INSERT INTO sandboxes (` + sandboxColumns + `) VALUES (` + placeholders(16) + `)`
	deleteSandboxSQL = `DELETE FROM sandboxes WHERE id = ?`
)

// hotStmts are the statements every sandbox's life runs: its insert, its
// read by id (from the reader pool and inside write transactions) and its
// delete, prepared once when the store opens. modernc's SQLite compiles a
// statement that is not prepared on every call, which was a third of the
// store's CPU per sandbox life (perf of sbx-bench's sustained scenario).
// A transaction uses them through Tx.StmtContext, which reuses the
// statement already prepared on the writer's one connection.
type hotStmts struct {
	getR, getW, insert, del *sql.Stmt
}

// prepareHot prepares the hot statements on the writer w and the reader
// pool r.
func prepareHot(ctx context.Context, w, r *sql.DB) (*hotStmts, error) {
	h := &hotStmts{}
	var err error
	prep := func(db *sql.DB, query string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = db.PrepareContext(ctx, query)
		return st
	}
	h.getR = prep(r, selectSandboxSQL)
	h.getW = prep(w, selectSandboxSQL)
	h.insert = prep(w, insertSandboxSQL)
	h.del = prep(w, deleteSandboxSQL)
	if err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

// close closes the statements; it is safe on a partly prepared set.
func (h *hotStmts) close() error {
	var errs []error
	for _, st := range []*sql.Stmt{h.getR, h.getW, h.insert, h.del} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}
