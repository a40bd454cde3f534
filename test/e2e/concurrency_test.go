package e2e

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
)

// TestConcurrentCreates: 100 sandboxes created in parallel by 10 clients
// all reach RUNNING or get a clear quota error (with a retry delay), and
// after cleanup nothing is left: no sandbox dir, mount, cgroup or process.
// The quota is set below 100 so that both outcomes happen.
func TestConcurrentCreates(t *testing.T) {
	const clients, perClient, quota = 10, 10, 80
	s := startServer(t, "--max-sandboxes-per-tenant", fmt.Sprint(quota))
	ctx := ctxT(t, 4*time.Minute)

	var (
		mu              sync.Mutex
		running, quotad int
		ids             []string
		wg              sync.WaitGroup
	)
	for i := 0; i < clients; i++ {
		c := s.client() // one client (connection pool) per worker
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perClient; j++ {
				sb, err := c.Run(ctx, sbx.Image("busybox"), sbx.Tags("burst"))
				if err == nil {
					err = sb.Wait(ctx)
				}
				mu.Lock()
				switch {
				case err == nil:
					running++
					ids = append(ids, sb.ID())
				case errors.Is(err, sbx.ErrResourceExhausted) && sbx.ReasonOf(err) == "QUOTA_EXCEEDED" && sbx.RetryAfterOf(err) > 0:
					quotad++
				default:
					t.Errorf("create: %v (reason %q)", err, sbx.ReasonOf(err))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d running, %d refused by the quota of %d", running, quotad, quota)
	if running+quotad != clients*perClient {
		t.Errorf("%d running + %d quota errors, want %d in all", running, quotad, clients*perClient)
	}
	if running != quota {
		t.Errorf("%d sandboxes running, want exactly the quota of %d", running, quota)
	}
	// Every one is usable.
	c := s.client()
	for _, id := range ids[:5] {
		p, err := c.FromID(id).Exec(ctx, []string{"true"})
		if err == nil {
			_, err = p.Wait()
		}
		if err != nil {
			t.Errorf("exec in %s: %v", id, err)
		}
	}
	if len(s.leaks()) == 0 {
		t.Error("the leak check sees nothing while sandboxes run: it cannot be trusted")
	}
	// Cleanup (and the leak check) also runs at the end; do it here to
	// check it explicitly, in parallel as clients would.
	var dwg sync.WaitGroup
	for _, id := range ids {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			if err := c.Delete(ctx, id); err != nil {
				t.Errorf("delete %s: %v", id, err)
			}
		}()
	}
	dwg.Wait()
	if list, err := c.List(ctx, sbx.ListOptions{All: true}); err != nil || len(list) != 0 {
		t.Errorf("after deleting all: %d sandboxes listed, %v", len(list), err)
	}
	s.checkNoLeaks()
}
