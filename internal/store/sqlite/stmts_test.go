package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// The prepared statements of a sandbox's life (insert, read by id, delete)
// never answer from an old snapshot: every read, from any of the reader
// pool's connections, sees the last committed write, also after a delete
// and a re-create of the same id.
func TestPreparedStatementsSeeEveryWrite(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	for i := range 60 {
		id := fmt.Sprintf("sb-%d", i%3) // ids come back after their delete
		sb := &sandbox.Sandbox{ID: id, TenantID: "t1", State: sandbox.StateCreating, CreatedAt: time.Unix(int64(1000+i), 0)}
		if err := s.CreateSandbox(ctx, sb); err != nil {
			t.Fatalf("round %d: create: %v", i, err)
		}
		readAll := func(what string, want sandbox.State) {
			// Several readers at once, so that more than one of the
			// pool's connections (each with its own statement) answers.
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, err := s.GetSandbox(ctx, "t1", id)
					switch {
					case want == "" && !errors.Is(err, sandbox.ErrNotFound):
						errs <- fmt.Errorf("%s: got %v, %v; want not found", what, got, err)
					case want != "" && (err != nil || got.State != want || !got.CreatedAt.Equal(sb.CreatedAt)):
						errs <- fmt.Errorf("%s: got %+v, %v; want state %s created %v", what, got, err, want, sb.CreatedAt)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		readAll("after create", sandbox.StateCreating)
		if _, err := s.UpdateSandbox(ctx, id, func(sb *sandbox.Sandbox) error { sb.State = sandbox.StateRunning; return nil }); err != nil {
			t.Fatalf("round %d: update: %v", i, err)
		}
		readAll("after update", sandbox.StateRunning)
		if err := s.DeleteSandbox(ctx, id); err != nil {
			t.Fatalf("round %d: delete: %v", i, err)
		}
		readAll("after delete", "")
		if err := s.DeleteSandbox(ctx, id); !errors.Is(err, sandbox.ErrNotFound) {
			t.Fatalf("round %d: second delete: %v; want not found", i, err)
		}
	}
}
