package lifecycle

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// TestDeleteCrashMidTeardown: Delete answers once the record is gone, while
// the container's teardown still waits in the background; a server that
// dies then leaves the container, and the next start deletes it.
func TestDeleteCrashMidTeardown(t *testing.T) {
	e := newEnv(t, nil)
	sb := e.wait(t, e.create(t, CreateRequest{}).ID, UntilRunning)
	entered := make(chan struct{}, 1)
	e.rt.DeleteHook = func(ctx context.Context, id string) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done() // the teardown hangs until the server goes away
		return ctx.Err()
	}
	ctx := context.Background()
	if err := e.m.Delete(ctx, tenant, sb.ID); err != nil {
		t.Fatal(err)
	}
	_, err := e.m.Get(ctx, tenant, sb.ID)
	wantErr(t, err, sandbox.ErrNotFound, sandbox.ReasonSandboxNotFound)
	<-entered
	if !e.rt.Has(sb.ID) {
		t.Fatal("the container is gone although its teardown hangs")
	}
	e.m.Close() // the crash: the teardown is cut short
	if !e.rt.Has(sb.ID) {
		t.Fatal("the container is gone although its teardown was cut short")
	}
	e.rt.DeleteHook = nil
	e.start(t, nil)
	eventually(t, "Recover to delete the container of the deleted record", func() bool { return !e.rt.Has(sb.ID) })
}

// TestTeardownBounded: deletes answer at once while at most
// TeardownParallel teardowns run, and every container is removed in the
// end; while accepted creates wait for a slot, only one teardown runs.
func TestTeardownBounded(t *testing.T) {
	var mu sync.Mutex
	now, maxSeen := 0, 0
	release := make(chan struct{})
	e := newEnv(t, func(c *Config) { c.TeardownParallel = 2 })
	var ids []string
	for i := 0; i < 8; i++ {
		ids = append(ids, e.wait(t, e.create(t, CreateRequest{}).ID, UntilRunning).ID)
	}
	e.rt.DeleteHook = func(ctx context.Context, id string) error {
		mu.Lock()
		now++
		maxSeen = max(maxSeen, now)
		mu.Unlock()
		<-release
		mu.Lock()
		now--
		mu.Unlock()
		return nil
	}
	for _, id := range ids {
		if err := e.m.Delete(context.Background(), tenant, id); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "two teardowns to run", func() bool { st := e.m.Teardowns(); return st.Running == 2 && st.Queued == 6 })
	close(release)
	eventually(t, "every container to be torn down", func() bool { return e.rt.Len() == 0 })
	if maxSeen > 2 {
		t.Errorf("%d teardowns ran at once, the limit is 2", maxSeen)
	}
	if st := e.m.Teardowns(); st.Done != 8 || st.Running != 0 || st.Queued != 0 {
		t.Errorf("teardowns %+v, want 8 done and nothing left", st)
	}

	// A Create call in progress (a warm claim) lowers the limit to one; a
	// cold create queued keeps it whole (teardown.go).
	limit := func() int {
		e.m.teardown.mu.Lock()
		defer e.m.teardown.mu.Unlock()
		return e.m.teardownLimit()
	}
	forgetColdCreates(e.m) // the creates above ended long ago
	if err := e.m.admit.reserve(); err != nil {
		t.Fatal(err)
	}
	e.m.inCreate.Add(1)
	if got := limit(); got != 2 {
		t.Errorf("teardown limit with a cold create queued = %d, want 2", got)
	}
	e.m.inCreate.Add(-1)
	e.m.admit.unreserve()
	e.m.inCreate.Add(1)
	if got := limit(); got != 1 {
		t.Errorf("teardown limit with a Create call in progress = %d, want 1", got)
	}
	e.m.inCreate.Add(-1)
	if got := limit(); got != 2 {
		t.Errorf("teardown limit with no create in progress = %d, want 2", got)
	}
}

// TestDeleteWhileQueued: a sandbox deleted while its create waits for a
// slot is never created in the runtime, and its record is gone.
func TestDeleteWhileQueued(t *testing.T) {
	gate := make(chan struct{})
	e := newEnv(t, func(c *Config) { c.MaxConcurrentCreates, c.CreateQueue, c.CreateLatencyTarget = 1, 2, -1 })
	e.rt.CreateGate = gate
	first := e.create(t, CreateRequest{})
	queued := e.create(t, CreateRequest{})
	eventually(t, "the first create to hold the slot", func() bool { return e.m.Admission().Running == 1 })
	if err := e.m.Delete(context.Background(), tenant, queued.ID); err != nil {
		t.Fatal(err)
	}
	close(gate)
	e.wait(t, first.ID, UntilRunning)
	eventually(t, "the queue to drain", func() bool { st := e.m.Admission(); return st.Running == 0 && st.Queued == 0 })
	if e.rt.Has(queued.ID) {
		t.Error("the sandbox deleted while queued was created in the runtime")
	}
	_, err := e.m.Get(context.Background(), tenant, queued.ID)
	wantErr(t, err, sandbox.ErrNotFound, sandbox.ReasonSandboxNotFound)
}

// TestQuotaAfterDeleteAndStop: the cached quota count never refuses a
// create that the store's count allows: after a delete or a stop there is
// room again at once, and a full tenant is refused.
func TestQuotaAfterDeleteAndStop(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxSandboxesPerTenant = 2 })
	ctx := context.Background()
	a := e.create(t, CreateRequest{})
	b := e.create(t, CreateRequest{})
	_, err := e.m.Create(ctx, tenant, CreateRequest{})
	wantErr(t, err, sandbox.ErrResourceExhausted, sandbox.ReasonQuotaExceeded)
	e.wait(t, a.ID, UntilRunning)
	if err := e.m.Delete(ctx, tenant, a.ID); err != nil {
		t.Fatal(err)
	}
	c := e.create(t, CreateRequest{})
	_, err = e.m.Create(ctx, tenant, CreateRequest{})
	wantErr(t, err, sandbox.ErrResourceExhausted, sandbox.ReasonQuotaExceeded)
	e.wait(t, b.ID, UntilRunning)
	if _, err := e.m.Stop(ctx, tenant, b.ID, 0); err != nil {
		t.Fatal(err)
	}
	e.create(t, CreateRequest{})
	_, err = e.m.Create(ctx, tenant, CreateRequest{})
	wantErr(t, err, sandbox.ErrResourceExhausted, sandbox.ReasonQuotaExceeded)
	e.wait(t, c.ID, UntilRunning)
}

// TestAdmissionLatencyTarget: with a latency target, a cold create is
// queued only while the expected time to the end of its runtime create
// (the queue ahead drains at limit per mean create time) is within the
// target; past it, CREATE_QUEUE_FULL with a retry delay. With a slot free
// it is accepted whatever the mean.
func TestAdmissionLatencyTarget(t *testing.T) {
	a := newAdmission(2, 100, time.Second)
	a.mean = 400 * time.Millisecond
	for i := 0; i < 2; i++ { // both slots busy
		if err := a.reserve(); err != nil {
			t.Fatal(err)
		}
		if err := a.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// Queued at place q (0-based), a create ends after
	// 400 ms + (q+1) × 200 ms: places 0..2 fit in 1 s, place 3 does not.
	for q := 0; q < 3; q++ {
		if err := a.reserve(); err != nil {
			t.Fatalf("queue place %d refused: %v", q, err)
		}
	}
	err := a.reserve()
	if sandbox.ReasonOf(err) != sandbox.ReasonCreateQueueFull || sandbox.RetryAfterOf(err) < minQueueRetry {
		t.Fatalf("queue place 3: %v, want CREATE_QUEUE_FULL with a retry delay", err)
	}
	if got, want := a.capacityLocked(), 2+3; got != want {
		t.Errorf("capacity %d, want %d", got, want)
	}

	slow := newAdmission(2, 100, time.Second)
	slow.mean = 3 * time.Second
	if err := slow.reserve(); err != nil {
		t.Fatalf("a free slot was refused because creates are slow: %v", err)
	}
	if err := slow.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := slow.reserve(); err != nil {
		t.Fatalf("the second free slot was refused: %v", err)
	}
	if err := slow.reserve(); sandbox.ReasonOf(err) != sandbox.ReasonCreateQueueFull {
		t.Fatalf("a queue place that ends after 4.5 s: %v, want CREATE_QUEUE_FULL", err)
	}
}

// TestDrainTeardowns: a graceful shutdown waits for the teardowns of
// sandboxes deleted before it, and gives up when its context ends;
// AwaitTeardowns (removing an image) waits for those pending when called.
func TestDrainTeardowns(t *testing.T) {
	for name, wait := range map[string]func(*Manager, context.Context) error{
		"DrainTeardowns": (*Manager).DrainTeardowns,
		"AwaitTeardowns": (*Manager).AwaitTeardowns,
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			if err := wait(e.m, context.Background()); err != nil {
				t.Fatalf("with nothing queued: %v", err)
			}
			hold := make(chan struct{})
			e.rt.DeleteHook = func(ctx context.Context, id string) error {
				select {
				case <-hold:
				case <-ctx.Done():
				}
				return nil
			}
			sb := e.create(t, CreateRequest{})
			e.wait(t, sb.ID, UntilRunning)
			if err := e.m.Delete(context.Background(), tenant, sb.ID); err != nil {
				t.Fatal(err)
			}
			short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := wait(e.m, short); err == nil {
				t.Fatalf("%s returned nil while a teardown was held", name)
			}
			close(hold)
			if err := wait(e.m, context.Background()); err != nil {
				t.Fatal(err)
			}
			if e.rt.Has(sb.ID) {
				t.Errorf("the deleted sandbox is still in the runtime after %s", name)
			}
		})
	}
}
