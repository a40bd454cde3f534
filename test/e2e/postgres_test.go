package e2e

import (
	"testing"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/testenv"
)

// TestPostgresStore runs the server on PostgreSQL (--store-dsn): a sandbox
// runs, and it survives a kill -9 of the server with its record intact.
func TestPostgresStore(t *testing.T) {
	dsn := testenv.Postgres(t)
	s := startServer(t, "--store-dsn", dsn)
	c := s.client()
	ctx := ctxT(t, 2*time.Minute)
	sb, err := c.Run(ctx, sbx.Image("busybox"), sbx.Tags("pg"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	s.kill9()
	s.start()
	p, err := c.FromID(sb.ID()).Exec(ctx, []string{"echo", "pg"})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := p.Result(); err != nil || string(res.Stdout) != "pg\n" {
		t.Errorf("exec after restart on PostgreSQL: %q, %v", res.Stdout, err)
	}
	list, err := c.List(ctx, sbx.ListOptions{Tags: []string{"pg"}})
	if err != nil || len(list) != 1 || list[0].Info().State != sbx.StateRunning {
		t.Errorf("list after restart: %v, %v", list, err)
	}
}
