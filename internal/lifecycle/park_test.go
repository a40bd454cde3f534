package lifecycle

import (
	"context"
	"sync"
	"testing"
	"time"
)

// parkRecorder is a Config.Park that records what it parked.
type parkRecorder struct {
	mu     sync.Mutex
	parked map[string]bool
}

func (p *parkRecorder) park(ctx context.Context, id string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.parked == nil {
		p.parked = map[string]bool{}
	}
	p.parked[id] = true
	return true, nil
}

func (p *parkRecorder) has(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.parked[id]
}

// forgetColdCreates makes the cold creates m saw (those that set up a
// test) count as long past, as they would be in a burst of claims.
func forgetColdCreates(m *Manager) {
	m.admit.mu.Lock()
	m.admit.lastUser = time.Time{}
	m.admit.mu.Unlock()
}

// TestParkedTeardownWaitsForCreates: Delete parks an idle sandbox at once,
// and its teardown waits while creates that need no runtime create (warm
// claims) keep coming, then runs once they pause.
func TestParkedTeardownWaitsForCreates(t *testing.T) {
	var pr parkRecorder
	e := newEnv(t, func(c *Config) { c.Park = pr.park })
	ctx := context.Background()
	sb := e.wait(t, e.create(t, CreateRequest{}).ID, UntilRunning)
	forgetColdCreates(e.m) // that cold create ended long ago
	e.m.inCreate.Add(1)    // a claim in progress, for as long as we hold it
	if err := e.m.Delete(ctx, tenant, sb.ID); err != nil {
		t.Fatal(err)
	}
	if !pr.has(sb.ID) {
		t.Fatal("Delete did not park the idle sandbox")
	}
	time.Sleep(300 * time.Millisecond) // past teardownYield and createQuiet
	if !e.rt.Has(sb.ID) {
		t.Fatal("the parked sandbox was torn down while creates were in progress")
	}
	e.m.inCreate.Add(-1)
	eventually(t, "the parked sandbox's teardown once creates paused", func() bool { return !e.rt.Has(sb.ID) })
	if st := e.m.Teardowns(); st.Done != 1 || st.Queued != 0 || st.Running != 0 {
		t.Errorf("teardowns %+v, want 1 done", st)
	}
}

// TestParkedTeardownDuringColdCreates: while user creates that need the
// runtime come, an idle sandbox's teardown runs at once, without parking:
// waiting would only make each of them slower (teardown.go).
func TestParkedTeardownDuringColdCreates(t *testing.T) {
	var pr parkRecorder
	e := newEnv(t, func(c *Config) { c.Park = pr.park })
	ctx := context.Background()
	sb := e.wait(t, e.create(t, CreateRequest{}).ID, UntilRunning)
	// A cold create accepted and waiting for its slot, for as long as we
	// hold it, and its Create call.
	if err := e.m.admit.reserve(); err != nil {
		t.Fatal(err)
	}
	defer e.m.admit.unreserve()
	e.m.inCreate.Add(1)
	defer e.m.inCreate.Add(-1)
	if err := e.m.Delete(ctx, tenant, sb.ID); err != nil {
		t.Fatal(err)
	}
	if pr.has(sb.ID) {
		t.Error("Delete parked the sandbox although its teardown runs at once")
	}
	eventually(t, "the sandbox's teardown while a cold create waits", func() bool { return !e.rt.Has(sb.ID) })
}

// TestParkedTeardownHurried: a caller that waits for the teardowns
// (AwaitTeardowns, as image removal does) does not wait for creates to
// pause.
func TestParkedTeardownHurried(t *testing.T) {
	var pr parkRecorder
	e := newEnv(t, func(c *Config) { c.Park = pr.park })
	ctx := context.Background()
	sb := e.wait(t, e.create(t, CreateRequest{}).ID, UntilRunning)
	e.m.inCreate.Add(1)
	defer e.m.inCreate.Add(-1)
	if err := e.m.Delete(ctx, tenant, sb.ID); err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := e.m.AwaitTeardowns(actx); err != nil {
		t.Fatal(err)
	}
	if e.rt.Has(sb.ID) {
		t.Fatal("AwaitTeardowns returned with the sandbox still there")
	}
}

// TestDeleteWithCommandNotParked: a sandbox whose main command runs gets
// the stop grace, so Delete does not park it.
func TestDeleteWithCommandNotParked(t *testing.T) {
	var pr parkRecorder
	e := newEnv(t, func(c *Config) { c.Park = pr.park })
	sb := e.wait(t, e.create(t, CreateRequest{Command: []string{"sleep", "1000"}}).ID, UntilRunning)
	if err := e.m.Delete(context.Background(), tenant, sb.ID); err != nil {
		t.Fatal(err)
	}
	if pr.has(sb.ID) {
		t.Fatal("Delete parked a sandbox whose main command gets a stop grace")
	}
	eventually(t, "the teardown", func() bool { return !e.rt.Has(sb.ID) })
}

// TestParkedTeardownAfterRestart: a server that stops with parked
// sandboxes still queued leaves their containers, and the next start
// removes them (Recover deletes containers without a record).
func TestParkedTeardownAfterRestart(t *testing.T) {
	var pr parkRecorder
	e := newEnv(t, func(c *Config) { c.Park = pr.park })
	ctx := context.Background()
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, e.wait(t, e.create(t, CreateRequest{}).ID, UntilRunning).ID)
	}
	forgetColdCreates(e.m)
	e.m.inCreate.Add(1) // claims keep coming: the teardowns wait
	for _, id := range ids {
		if err := e.m.Delete(ctx, tenant, id); err != nil {
			t.Fatal(err)
		}
	}
	e.m.Close()
	for _, id := range ids {
		if !e.rt.Has(id) {
			t.Fatalf("parked sandbox %s was torn down although creates were in progress", id)
		}
	}
	e.start(t, func(c *Config) { c.Park = pr.park })
	for _, id := range ids {
		eventually(t, "Recover to delete parked sandbox "+id, func() bool { return !e.rt.Has(id) })
	}
}

// TestRefillHolds: a pool's refills wait while creates come and the pool
// still holds plenty, and not once it runs low or creates pause.
func TestRefillHolds(t *testing.T) {
	e := newEnv(t, nil)
	p := &pool{cfg: PoolConfig{MinIdle: 400}}
	p.idle = make([]string, 200)
	e.m.lastCreate.Store(time.Now().UnixNano())
	if !e.m.refillHolds(p) {
		t.Error("refills of a pool holding half its minimum did not wait while creates come")
	}
	p.idle = p.idle[:40]
	if e.m.refillHolds(p) {
		t.Error("refills of a pool holding a tenth of its minimum waited")
	}
	p.idle = make([]string, 200)
	e.m.lastCreate.Store(time.Now().Add(-time.Second).UnixNano())
	if e.m.refillHolds(p) {
		t.Error("refills waited although creates paused")
	}
	small := &pool{cfg: PoolConfig{MinIdle: 2}, idle: make([]string, 2)}
	e.m.lastCreate.Store(time.Now().UnixNano())
	if e.m.refillHolds(small) {
		t.Error("refills of a small pool waited")
	}
}
