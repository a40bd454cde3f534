package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
)

// TestRestartKill9MidFlight kills the server with SIGKILL while creates and
// deletes are in flight, starts it again on the same data dir, and checks
// that every sandbox it lists settles (RUNNING and usable, or ended with a
// reason) and that nothing is left on the host once all are deleted: the
// cleanup's leak check also covers deletes accepted just before the kill,
// whose teardown the killed server never finished.
func TestRestartKill9MidFlight(t *testing.T) {
	s := startServer(t)
	c := s.client()
	ctx := ctxT(t, 4*time.Minute)

	var victims []*sbx.Sandbox
	for i := 0; i < 4; i++ {
		sb, err := c.Run(ctx, sbx.Image("busybox"))
		if err != nil {
			t.Fatal(err)
		}
		if err := sb.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		victims = append(victims, sb)
	}

	// Calls in flight when the server dies fail; which ones got through
	// does not matter, only that the server makes sense of what it finds.
	callCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, sb := range victims {
		wg.Add(1)
		go func() { defer wg.Done(); _ = sb.Delete(callCtx) }()
	}
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = c.Run(callCtx, sbx.Image("busybox")) }()
	}
	// The kill point: creates accepted, some in the runtime, deletes
	// accepted with their teardowns queued or running.
	time.Sleep(300 * time.Millisecond)
	s.kill9()
	wg.Wait()
	s.start()

	list, err := c.List(ctx, sbx.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) == 0 {
		t.Fatal("the restarted server lists no sandbox at all")
	}
	running := 0
	for _, sb := range list {
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		err := sb.Wait(wctx)
		wcancel()
		info, rerr := sb.Refresh(ctx)
		if rerr != nil {
			t.Errorf("%s after the restart: %v", sb.ID(), rerr)
			continue
		}
		switch {
		case info.State == sbx.StateRunning:
			running++
			p, err := sb.Exec(ctx, []string{"echo", "alive"})
			if err != nil {
				t.Errorf("exec in %s after the restart: %v", sb.ID(), err)
				continue
			}
			if res, err := p.Result(); err != nil || string(res.Stdout) != "alive\n" {
				t.Errorf("exec in %s after the restart: %q, %v", sb.ID(), res.Stdout, err)
			}
		case info.State.Terminal():
			if info.State == sbx.StateFailed && info.Reason == "" {
				t.Errorf("%s FAILED across the restart with no reason", sb.ID())
			}
		default:
			t.Errorf("%s is still %s a minute after the restart (wait: %v)", sb.ID(), info.State, err)
		}
	}
	t.Logf("after the restart: %d sandboxes listed, %d running", len(list), running)
	// s.cleanup (registered by startServer) deletes them all and checks
	// that no dir, mount, cgroup or process of any of them is left.
}
