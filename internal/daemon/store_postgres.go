package daemon

import (
	"context"
	"fmt"

	"github.com/sbx-run/sbx/internal/store"
	"github.com/sbx-run/sbx/internal/store/postgres"
)

// openPostgres opens the PostgreSQL store named by dsn.
func openPostgres(ctx context.Context, dsn string) (store.Store, error) {
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL store (check --store-dsn and that the server is up): %w", err)
	}
	return st, nil
}
