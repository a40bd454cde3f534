package lifecycle

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// concurrency counts the runtime creates in progress in the fake runtime and
// holds each until release is closed.
type concurrency struct {
	mu           sync.Mutex
	now, maxSeen int
	release      chan struct{}
}

func (c *concurrency) create(sandbox.Spec) error {
	c.mu.Lock()
	c.now++
	c.maxSeen = max(c.maxSeen, c.now)
	c.mu.Unlock()
	<-c.release
	c.mu.Lock()
	c.now--
	c.mu.Unlock()
	return nil
}

// burst runs n Creates at once and returns their results.
func burst(e *env, n int) ([]*sandbox.Sandbox, []error) {
	sbs, errs := make([]*sandbox.Sandbox, n), make([]error, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			sbs[i], errs[i] = e.m.Create(context.Background(), tenant, CreateRequest{Image: "busybox"})
		}()
	}
	close(gate)
	wg.Wait()
	return sbs, errs
}

// TestCreateBurstAdmission: a burst larger than the create limit plus its
// queue gets exactly limit+queue acceptances, and every other Create a
// RESOURCE_EXHAUSTED CREATE_QUEUE_FULL with a retry delay; the runtime
// never runs more creates at once than the limit; every accepted sandbox
// reaches RUNNING, and after deleting them nothing is left in the runtime.
func TestCreateBurstAdmission(t *testing.T) {
	c := &concurrency{release: make(chan struct{})}
	e := newEnv(t, func(cfg *Config) { cfg.MaxConcurrentCreates, cfg.CreateQueue, cfg.CreateLatencyTarget = 2, 3, -1 })
	e.rt.CreateErr = c.create
	sbs, errs := burst(e, 20)
	var accepted []*sandbox.Sandbox
	for i, err := range errs {
		switch {
		case err == nil:
			accepted = append(accepted, sbs[i])
		case errors.Is(err, sandbox.ErrResourceExhausted) && sandbox.ReasonOf(err) == sandbox.ReasonCreateQueueFull:
			if d := sandbox.RetryAfterOf(err); d <= 0 {
				t.Errorf("CREATE_QUEUE_FULL without a retry delay: %v", err)
			}
		default:
			t.Errorf("create: %v (reason %q), want success or CREATE_QUEUE_FULL", err, sandbox.ReasonOf(err))
		}
	}
	if len(accepted) != 5 {
		t.Fatalf("%d creates accepted, want limit 2 + queue 3", len(accepted))
	}
	if st := e.m.Admission(); st.Running != 2 || st.Queued != 3 {
		t.Errorf("admission %+v, want 2 running and 3 queued", st)
	}
	close(c.release)
	for _, sb := range accepted {
		if got := e.wait(t, sb.ID, UntilRunning); got.State != sandbox.StateRunning {
			t.Errorf("%s is %s (%s), want RUNNING", sb.ID, got.State, got.Reason)
		}
	}
	if c.maxSeen > 2 {
		t.Errorf("%d runtime creates ran at once, the limit is 2", c.maxSeen)
	}
	// Room again once the burst is through.
	accepted = append(accepted, e.wait(t, e.create(t, CreateRequest{Image: "busybox"}).ID, UntilRunning))
	for _, sb := range accepted {
		if err := e.m.Delete(context.Background(), tenant, sb.ID); err != nil {
			t.Fatal(err)
		}
	}
	if st := e.m.Admission(); st.Running != 0 || st.Queued != 0 {
		t.Errorf("admission %+v after the burst, want nothing running or queued", st)
	}
	eventually(t, "the runtime to be empty after deleting every accepted one", func() bool { return e.rt.Len() == 0 })
}

// TestBurstQuotaAndAdmission: under a burst, the tenant quota still answers
// exactly (QUOTA_EXCEEDED past it, with a retry delay), before admission
// control counts anything.
func TestBurstQuotaAndAdmission(t *testing.T) {
	c := &concurrency{release: make(chan struct{})}
	e := newEnv(t, func(cfg *Config) {
		cfg.MaxSandboxesPerTenant = 4
		cfg.MaxConcurrentCreates, cfg.CreateQueue, cfg.CreateLatencyTarget = 2, 10, -1
	})
	e.rt.CreateErr = c.create
	sbs, errs := burst(e, 20)
	ok, quota := 0, 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
			defer e.wait(t, sbs[i].ID, UntilRunning)
		case errors.Is(err, sandbox.ErrResourceExhausted) && sandbox.ReasonOf(err) == sandbox.ReasonQuotaExceeded && sandbox.RetryAfterOf(err) > 0:
			quota++
		default:
			t.Errorf("create: %v (reason %q), want success or QUOTA_EXCEEDED", err, sandbox.ReasonOf(err))
		}
	}
	if ok != 4 || quota != 16 {
		t.Errorf("%d accepted and %d QUOTA_EXCEEDED, want 4 and 16", ok, quota)
	}
	close(c.release)
}

// TestStopWhileQueued: a sandbox stopped while it waits for a create slot
// ends TERMINATED and is never created in the runtime.
func TestStopWhileQueued(t *testing.T) {
	c := &concurrency{release: make(chan struct{})}
	e := newEnv(t, func(cfg *Config) { cfg.MaxConcurrentCreates, cfg.CreateQueue, cfg.CreateLatencyTarget = 1, 2, -1 })
	e.rt.CreateErr = c.create
	first := e.create(t, CreateRequest{Image: "busybox"})
	// The second create is made only once the first holds the slot: both
	// wait for it in the background, in the order they ask for it, which
	// need not be the order of their Create calls.
	eventually(t, "the first create to hold the slot", func() bool { return e.m.Admission().Running == 1 })
	queued := e.create(t, CreateRequest{Image: "busybox"})
	eventually(t, "the second create to queue", func() bool { return e.m.Admission().Queued == 1 })
	sb, err := e.m.Stop(context.Background(), tenant, queued.ID, 0)
	if err != nil || sb.State != sandbox.StateTerminated {
		t.Fatalf("Stop: %v, %+v", err, sb)
	}
	close(c.release)
	e.wait(t, first.ID, UntilRunning)
	eventually(t, "the queue to drain", func() bool { st := e.m.Admission(); return st.Running == 0 && st.Queued == 0 })
	if e.rt.Has(queued.ID) {
		t.Error("the sandbox stopped while queued was created in the runtime")
	}
}

// TestAdmissionRefillYields: a pool refill gets a slot only when no
// accepted create waits for one and fewer than half the slots hold
// refills; a queued create whose caller gives up frees its place.
func TestAdmissionRefillYields(t *testing.T) {
	a := newAdmission(2, 2, 0)
	done, cancel := context.WithCancel(context.Background())
	cancel() // acquireBackground then only checks, never waits

	if err := a.reserve(); err != nil {
		t.Fatal(err)
	}
	if err := a.acquireBackground(done); err == nil {
		t.Fatal("a refill took a slot while a user create was accepted and waiting")
	}
	if err := a.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := a.acquireBackground(done); err != nil {
		t.Fatalf("a refill found no slot with 1 of 2 used and nobody waiting: %v", err)
	}
	// Both slots are held (one user, one refill): a second refill may not
	// run, and a user create queues.
	if err := a.acquireBackground(done); err == nil {
		t.Fatal("refills took more than half the slots")
	}
	if err := a.reserve(); err != nil {
		t.Fatal(err)
	}
	gaveUp, stop := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { errc <- a.acquire(gaveUp) }()
	stop()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire after cancel: %v", err)
	}
	a.release(10*time.Millisecond, true)
	a.release(10*time.Millisecond, false)
	if st := (&Manager{admit: a}).Admission(); st.Running != 0 || st.Queued != 0 || st.Refills != 0 {
		t.Errorf("after releases: %+v, want all zero", st)
	}
	// Full: limit 2 + queue 2 accepted, the fifth refused with a delay.
	for i := 0; i < 4; i++ {
		if err := a.reserve(); err != nil {
			t.Fatal(err)
		}
	}
	err := a.reserve()
	if sandbox.ReasonOf(err) != sandbox.ReasonCreateQueueFull || sandbox.RetryAfterOf(err) < minQueueRetry {
		t.Fatalf("fifth reserve: %v, want CREATE_QUEUE_FULL with a retry delay", err)
	}
}

// TestAdmissionFirstMeasureReplacesGuess: the first create that finishes
// sets the mean create time outright (the initial guess would otherwise
// stretch a burst's retry delays for tens of creates); later ones average.
func TestAdmissionFirstMeasureReplacesGuess(t *testing.T) {
	a := newAdmission(4, 4, time.Second)
	if a.mean != initialCreateEstimate {
		t.Fatalf("initial mean %v", a.mean)
	}
	a.running = 2
	a.release(20*time.Millisecond, false)
	if a.mean != 20*time.Millisecond {
		t.Errorf("mean after the first create of 20ms: %v", a.mean)
	}
	a.release(100*time.Millisecond, false)
	if want := (7*20*time.Millisecond + 100*time.Millisecond) / 8; a.mean != want {
		t.Errorf("mean after a second of 100ms: %v, want the average %v", a.mean, want)
	}
}

func TestDefaultConcurrentCreates(t *testing.T) {
	for ncpu, want := range map[int]int{1: 2, 2: 3, 3: 5, 4: 6, 16: 24} {
		if got := defaultConcurrentCreates(ncpu); got != want {
			t.Errorf("%d CPUs: %d creates at once, want %d", ncpu, got, want)
		}
	}
}
