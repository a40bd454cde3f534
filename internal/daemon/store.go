package daemon

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/sbx-run/sbx/internal/store"
	"github.com/sbx-run/sbx/internal/store/sqlite"
)

// openStore opens the configured store: SQLite in the data dir by default.
func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	if cfg.StoreDSN != "" {
		return openPostgres(ctx, cfg.StoreDSN)
	}
	st, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "sbx.db"))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return st, nil
}
