package agent

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// countingDeferred returns a deferred whose warm-up steps and restore only
// count, and a channel that receives once the steps ran.
func countingDeferred(t *testing.T) (d *deferred, steps, restores *atomic.Int32, warmed chan struct{}) {
	t.Helper()
	steps, restores = new(atomic.Int32), new(atomic.Int32)
	warmed = make(chan struct{}, 4)
	d = newDeferred([]func(){
		func() { steps.Add(1) },
		func() { steps.Add(1); warmed <- struct{}{} },
	})
	d.procs = func() { restores.Add(1) }
	return d, steps, restores, warmed
}

// TestDeferredWarmsAfterInit: the warm-up starts once the first Init's
// end was written, not at the first answer (a Ping) nor before, and once.
func TestDeferredWarmsAfterInit(t *testing.T) {
	d, steps, _, warmed := countingDeferred(t)
	d.before(methodPing)
	d.after(methodPing)
	d.before(methodInit)
	time.Sleep(10 * time.Millisecond)
	if steps.Load() != 0 {
		t.Fatalf("the warm-up ran before the Init's answer: %d steps", steps.Load())
	}
	d.after(methodInit)
	select {
	case <-warmed:
	case <-time.After(10 * time.Second):
		t.Fatal("the warm-up did not run after the Init's answer")
	}
	d.before(methodInit)
	d.after(methodInit)
	d.finish()
	if n := steps.Load(); n != 2 {
		t.Fatalf("the warm-up's 2 steps ran %d times in all", n)
	}
}

// TestDeferredKeepsOneP: neither the delayed rest nor the answers of a
// Ping or an Init restore GOMAXPROCS: the agent keeps one P (StartEnv).
func TestDeferredKeepsOneP(t *testing.T) {
	d, _, restores, _ := countingDeferred(t)
	d.after(methodPing)
	d.after(methodInit)
	d.finish()
	time.Sleep(10 * time.Millisecond)
	if n := restores.Load(); n != 0 {
		t.Fatalf("%d restores without a data call; want none", n)
	}
}

// TestDeferredRestoresForDataOnly: the default GOMAXPROCS comes back, once,
// before a call that moves file data, not for a Ping, an Init or an exec.
func TestDeferredRestoresForDataOnly(t *testing.T) {
	d, _, restores, _ := countingDeferred(t)
	for _, m := range []string{methodPing, methodInit, methodStart, methodList, methodStat} {
		d.before(m)
		if restores.Load() != 0 {
			t.Fatalf("%s restored GOMAXPROCS", m)
		}
	}
	for _, m := range []string{methodRead, methodWrite, methodReadFD, methodWriteFD} {
		d.before(m)
		if n := restores.Load(); n != 1 {
			t.Fatalf("%s: %d restores, want 1", m, n)
		}
	}
}

// TestDeferredSealedByProcesses: once a sandbox process was started, a
// data call no longer restores GOMAXPROCS (a fork bomb may have filled the
// pids limit, and the Go runtime aborts when it cannot make a thread).
func TestDeferredSealedByProcesses(t *testing.T) {
	d, _, restores, _ := countingDeferred(t)
	s := &Server{later: d}
	s.beforeProcesses()
	d.before(methodWrite)
	if n := restores.Load(); n != 0 {
		t.Fatalf("a data call after a process restored GOMAXPROCS %d times", n)
	}
}

// TestWaitStartingOpensStreamsAfterInit: a client that waits for a fresh
// agent with WaitStarting opens its second connection only after the
// Init, and WaitReady opens it at once.
func TestWaitStartingOpensStreamsAfterInit(t *testing.T) {
	sock, ctx, stop := runInProcess(t, Config{})
	defer stop()
	var dials atomic.Int32 // connections made (the first Pings may find no socket yet)
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", sock)
		if err == nil {
			dials.Add(1)
		}
		return conn, err
	}

	c := newClient(dial)
	defer c.Close()
	if err := c.WaitStarting(ctx); err != nil {
		t.Fatal(err)
	}
	c.preparing.Wait()
	if n := dials.Load(); n != 1 {
		t.Fatalf("WaitStarting dialed %d connections, want 1 (no stream connection before the Init)", n)
	}
	if err := c.Init(ctx, InitSpec{}); err != nil {
		t.Fatal(err)
	}
	c.preparing.Wait()
	if n := dials.Load(); n != 2 {
		t.Fatalf("after the Init: %d connections, want 2", n)
	}

	dials.Store(0)
	r := newClient(dial)
	defer r.Close()
	if err := r.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	r.preparing.Wait()
	if n := dials.Load(); n != 2 {
		t.Fatalf("WaitReady: %d connections, want 2", n)
	}
}
