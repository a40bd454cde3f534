package postgres_test

import (
	"testing"

	"github.com/sbx-run/sbx/internal/secrets"
	"github.com/sbx-run/sbx/internal/store/postgres"
	"github.com/sbx-run/sbx/internal/store/storetest"
)

func TestSecretsConformance(t *testing.T) {
	storetest.RunSecrets(t, func(t *testing.T) secrets.Store { return open(t).(*postgres.Store) })
}
