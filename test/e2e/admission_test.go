package e2e

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
)

// TestAdmission: a server that works on one create at a time and queues
// none answers a burst with sandboxes and explicit CREATE_QUEUE_FULL
// refusals that carry a retry delay, nothing else; the SDK's own retries
// then get every create of a second burst through; nothing leaks.
func TestAdmission(t *testing.T) {
	const burst = 8
	s := startServer(t, "--max-concurrent-creates", "1", "--create-queue", "0")
	ctx := ctxT(t, 4*time.Minute)

	raw, err := sbx.NewClient(sbx.WithURL(s.url()), sbx.WithAPIKey(s.key), sbx.WithCreateRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu               sync.Mutex
		ids              []string
		accepted, queued int
		wg               sync.WaitGroup
	)
	burstOf := func(c *sbx.Client) {
		start := make(chan struct{})
		for range burst {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				sb, err := c.Run(ctx, sbx.Image("busybox"))
				if err == nil {
					err = sb.Wait(ctx)
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					accepted++
					ids = append(ids, sb.ID())
				case errors.Is(err, sbx.ErrResourceExhausted) && sbx.ReasonOf(err) == sbx.ReasonCreateQueueFull && sbx.RetryAfterOf(err) > 0:
					queued++
				default:
					t.Errorf("create: %v (reason %q)", err, sbx.ReasonOf(err))
				}
			}()
		}
		close(start)
		wg.Wait()
	}

	burstOf(raw)
	t.Logf("without SDK retries: %d created, %d refused with a retry delay", accepted, queued)
	if accepted == 0 || queued == 0 || accepted+queued != burst {
		t.Errorf("burst of %d with one create slot: %d created, %d refused; want both, and nothing else", burst, accepted, queued)
	}

	accepted, queued = 0, 0
	burstOf(s.client())
	if accepted != burst {
		t.Errorf("with SDK retries: %d of %d created (%d refusals reached the caller)", accepted, burst, queued)
	}

	c := s.client()
	for _, id := range ids {
		if err := c.Delete(ctx, id); err != nil {
			t.Errorf("delete %s: %v", id, err)
		}
	}
	s.checkNoLeaks()
}
