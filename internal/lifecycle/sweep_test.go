package lifecycle

import (
	"context"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func manyCreates(c *Config) {
	c.MaxSandboxesPerTenant = 10_000
	c.MaxConcurrentCreates, c.CreateQueue = 1000, 1000
}

// TestLifetimeEndsAmongMany: among many live sandboxes, the one whose
// lifetime runs out is ended, the others are left alone, and deleted or
// ended sandboxes leave the schedule.
func TestLifetimeEndsAmongMany(t *testing.T) {
	e := newEnv(t, manyCreates)
	var long []*sandbox.Sandbox
	for range 200 {
		long = append(long, e.create(t, CreateRequest{MaxLifetime: lifetime(time.Hour)}))
	}
	short := e.create(t, CreateRequest{MaxLifetime: lifetime(10 * time.Second)})
	e.wait(t, short.ID, UntilRunning)
	if n := e.m.deadlines.len(); n != 201 {
		t.Fatalf("schedule holds %d sandboxes, want 201", n)
	}
	e.clk.Advance(11 * time.Second)
	sb := e.wait(t, short.ID, UntilTerminal)
	if sb.State != sandbox.StateTerminated || sb.Reason != sandbox.ReasonLifetime {
		t.Fatalf("got %s %q", sb.State, sb.Reason)
	}
	ctx := context.Background()
	for _, l := range long {
		if got, err := e.m.Get(ctx, tenant, l.ID); err != nil || got.State.Terminal() {
			t.Fatalf("%s ended early: %v %+v", l.ID, err, got)
		}
	}
	// Deletes (some possibly still queued for a create slot) and stops
	// leave the schedule at once.
	for _, l := range long[:100] {
		if err := e.m.Delete(ctx, tenant, l.ID); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range long[100:150] {
		if _, err := e.m.Stop(ctx, tenant, l.ID, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.m.deadlines.len(); n != 50 {
		t.Fatalf("schedule holds %d sandboxes after deletes and stops, want 50", n)
	}
	e.clk.Advance(time.Hour)
	for _, l := range long[150:] {
		if sb := e.wait(t, l.ID, UntilTerminal); sb.Reason != sandbox.ReasonLifetime {
			t.Fatalf("%s: %s %q", l.ID, sb.State, sb.Reason)
		}
	}
}

// TestRestartRecoversDeadlines: a restarted server schedules the
// lifetimes of the sandboxes it finds, and ends each when it runs out, not
// before.
func TestRestartRecoversDeadlines(t *testing.T) {
	e := newEnv(t, manyCreates)
	a := e.create(t, CreateRequest{MaxLifetime: lifetime(10 * time.Second)})
	b := e.create(t, CreateRequest{MaxLifetime: lifetime(time.Hour)})
	e.wait(t, a.ID, UntilRunning)
	e.wait(t, b.ID, UntilRunning)
	e.m.Close()
	e.start(t, manyCreates)
	if n := e.m.deadlines.len(); n != 2 {
		t.Fatalf("restarted schedule holds %d sandboxes, want 2", n)
	}
	e.clk.Advance(11 * time.Second)
	if sb := e.wait(t, a.ID, UntilTerminal); sb.Reason != sandbox.ReasonLifetime {
		t.Fatalf("got %s %q", sb.State, sb.Reason)
	}
	if sb, _ := e.m.Get(context.Background(), tenant, b.ID); sb.State != sandbox.StateRunning {
		t.Fatalf("sandbox with an hour to live: %s %q", sb.State, sb.Reason)
	}
}

// TestSafetySweepEndsUnscheduled: a live sandbox the schedule does not
// hold (made by another replica, or an entry lost) is still ended, by the
// safety sweep's full read of the store.
func TestSafetySweepEndsUnscheduled(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SafetySweepInterval = time.Minute })
	ctx := context.Background()
	lost := e.create(t, CreateRequest{MaxLifetime: lifetime(10 * time.Second)})
	e.wait(t, lost.ID, UntilRunning)
	e.m.deadlines.untrack(lost.ID)

	// Another replica's sandbox, in the shared store and runtime.
	now := e.clk.Now()
	peer := &sandbox.Sandbox{ID: "sb-peer", TenantID: tenant, State: sandbox.StateRunning, Reason: sandbox.ReasonStarted,
		Spec: sandbox.Spec{ID: "sb-peer"}, CreatedAt: now, StartedAt: now, ExpiresAt: now.Add(10 * time.Second), MaxLifetime: 10 * time.Second}
	if err := e.st.CreateSandbox(ctx, peer); err != nil {
		t.Fatal(err)
	}
	e.rt.Adopt(peer.ID)

	e.clk.Advance(2 * time.Minute)
	for _, id := range []string{lost.ID, peer.ID} {
		if sb := e.wait(t, id, UntilTerminal); sb.State != sandbox.StateTerminated || sb.Reason != sandbox.ReasonLifetime {
			t.Fatalf("%s: %s %q", id, sb.State, sb.Reason)
		}
	}
}

// TestReplicasShareLifetimes: two servers on one store and runtime (as
// replicas on PostgreSQL and Kubernetes are); the one that made a sandbox
// dies, and the other ends it when its lifetime runs out.
func TestReplicasShareLifetimes(t *testing.T) {
	e := newEnv(t, nil)
	other := e.m
	e.start(t, nil) // a second replica, started before the create
	sb := e.create(t, CreateRequest{MaxLifetime: lifetime(2 * time.Minute)})
	e.wait(t, sb.ID, UntilRunning)
	e.m.Close() // the creator dies
	e.m = other
	e.clk.Advance(3 * time.Minute) // past the lifetime and a safety sweep
	if got := e.wait(t, sb.ID, UntilTerminal); got.State != sandbox.StateTerminated || got.Reason != sandbox.ReasonLifetime {
		t.Fatalf("got %s %q", got.State, got.Reason)
	}
}

// TestSessionClosedElsewhere: a session closed by another replica (or by
// this one before it died) stops this server's sandboxes of it.
func TestSessionClosedElsewhere(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	s, err := e.m.CreateSession(ctx, tenant, sandbox.SessionDefaults{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	in := e.create(t, CreateRequest{SessionID: s.ID})
	out := e.create(t, CreateRequest{})
	e.wait(t, in.ID, UntilRunning)
	if _, err := e.st.UpdateSession(ctx, s.ID, func(s *sandbox.Session) error {
		s.ClosedAt, s.CloseReason = e.clk.Now(), ReasonClosedByClient
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if sb := e.wait(t, in.ID, UntilTerminal); sb.State != sandbox.StateTerminated || sb.Reason != sandbox.ReasonStoppedBySession {
		t.Fatalf("got %s %q", sb.State, sb.Reason)
	}
	if sb, _ := e.m.Get(ctx, tenant, out.ID); sb.State.Terminal() {
		t.Fatal("a sandbox outside the session was stopped")
	}
}

func TestDeadlineSchedule(t *testing.T) {
	d := newDeadlines()
	t0 := time.Unix(1_800_000_000, 0)
	rec := func(id, session string, at time.Duration, st sandbox.State) *sandbox.Sandbox {
		return &sandbox.Sandbox{ID: id, SessionID: session, ExpiresAt: t0.Add(at), State: st}
	}
	d.track(rec("a", "s1", 3*time.Second, sandbox.StateRunning))
	d.track(rec("b", "", time.Second, sandbox.StateCreating))
	d.track(rec("c", "s1", 2*time.Second, sandbox.StatePending))
	d.track(rec("d", "s2", 5*time.Second, sandbox.StateRunning))
	d.track(rec("e", "", time.Second, sandbox.StateTerminating)) // stopping: not scheduled
	d.track(rec("b", "", 4*time.Second, sandbox.StateRunning))   // lifetime moved
	if got := d.due(t0.Add(2 * time.Second)); len(got) != 1 || got[0] != "c" {
		t.Fatalf("due at 2s: %v", got)
	}
	if got := d.sessions(); len(got) != 2 {
		t.Fatalf("sessions: %v", got)
	}
	if got := d.takeSession("s1"); len(got) != 1 || got[0] != "a" {
		t.Fatalf("session s1: %v", got)
	}
	d.track(rec("d", "s2", 5*time.Second, sandbox.StateTerminated))
	if got := d.sessions(); len(got) != 0 {
		t.Fatalf("sessions after the end of d: %v", got)
	}
	if got := d.due(t0.Add(time.Hour)); len(got) != 1 || got[0] != "b" || d.len() != 0 {
		t.Fatalf("due at 1h: %v, %d left", got, d.len())
	}
}
