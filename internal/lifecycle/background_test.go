package lifecycle

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestLifetimeEnforced(t *testing.T) {
	e := newEnv(t, nil)
	sb := e.create(t, CreateRequest{MaxLifetime: lifetime(10 * time.Second)})
	e.wait(t, sb.ID, UntilRunning)
	e.clk.Advance(11 * time.Second)
	sb = e.wait(t, sb.ID, UntilTerminal)
	if sb.State != sandbox.StateTerminated || sb.Reason != sandbox.ReasonLifetime {
		t.Fatalf("got %s %q", sb.State, sb.Reason)
	}
}

func TestLifetimeSurvivesRestart(t *testing.T) {
	e := newEnv(t, nil)
	sb := e.create(t, CreateRequest{MaxLifetime: lifetime(10 * time.Second)})
	e.wait(t, sb.ID, UntilRunning)
	e.m.Close()
	e.clk.Advance(11 * time.Second)
	e.start(t, nil)
	sb = e.wait(t, sb.ID, UntilTerminal)
	if sb.State != sandbox.StateTerminated || sb.Reason != sandbox.ReasonLifetime {
		t.Fatalf("got %s %q", sb.State, sb.Reason)
	}
}

func TestSessionDefaultsMerge(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	s, err := e.m.CreateSession(ctx, tenant, sandbox.SessionDefaults{
		Image: "busybox:1", MaxLifetime: 30 * time.Second, Tags: []string{"run-1"},
		Env: map[string]string{"A": "session", "B": "session"}, Resources: sandbox.Resources{Pids: 64},
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Lease != 60*time.Second {
		t.Fatalf("default lease %v", s.Lease)
	}
	sb := e.create(t, CreateRequest{SessionID: s.ID, Env: map[string]string{"B": "request"}, Tags: []string{"x"}})
	if sb.Spec.Image != "busybox:1" || sb.MaxLifetime != 30*time.Second || sb.Spec.Resources.Pids != 64 ||
		sb.Start.Env["A"] != "session" || sb.Start.Env["B"] != "request" || !slices.Equal(sb.Tags, []string{"run-1", "x"}) {
		t.Fatalf("merged: %+v", sb)
	}
	_, err = e.m.CreateSession(ctx, tenant, sandbox.SessionDefaults{MaxLifetime: 48 * time.Hour}, 0)
	wantErr(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonLifetimeTooLong)
	_, err = e.m.Create(ctx, "t-2", CreateRequest{SessionID: s.ID})
	wantErr(t, err, sandbox.ErrNotFound, sandbox.ReasonSessionNotFound)
}

func TestSessionLeaseExpiry(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	s, err := e.m.CreateSession(ctx, tenant, sandbox.SessionDefaults{}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a := e.create(t, CreateRequest{SessionID: s.ID})
	b := e.create(t, CreateRequest{SessionID: s.ID})
	other := e.create(t, CreateRequest{})
	e.wait(t, a.ID, UntilRunning)

	// Heartbeats keep it open past one lease.
	e.clk.Advance(4 * time.Second)
	if _, err := e.m.Heartbeat(ctx, tenant, s.ID); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(4 * time.Second)
	time.Sleep(20 * time.Millisecond) // several sweeps at the advanced time
	if got, _ := e.m.GetSession(ctx, tenant, s.ID); !got.ClosedAt.IsZero() {
		t.Fatalf("session closed despite heartbeat: %s", got.CloseReason)
	}

	e.clk.Advance(2 * time.Second)
	for _, id := range []string{a.ID, b.ID} {
		sb := e.wait(t, id, UntilTerminal)
		if sb.State != sandbox.StateTerminated || sb.Reason != sandbox.ReasonStoppedBySession {
			t.Fatalf("%s: %s %q", id, sb.State, sb.Reason)
		}
	}
	got, _ := e.m.GetSession(ctx, tenant, s.ID)
	if got.CloseReason != ReasonLeaseExpired {
		t.Fatalf("close reason %q", got.CloseReason)
	}
	if sb, _ := e.m.Get(ctx, tenant, other.ID); sb.State.Terminal() {
		t.Fatal("a sandbox outside the session was stopped")
	}
	_, err = e.m.Heartbeat(ctx, tenant, s.ID)
	wantErr(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonSessionClosed)
	_, err = e.m.Create(ctx, tenant, CreateRequest{SessionID: s.ID})
	wantErr(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonSessionClosed)
}

func TestSessionClose(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	s, _ := e.m.CreateSession(ctx, tenant, sandbox.SessionDefaults{}, 0)
	a := e.create(t, CreateRequest{SessionID: s.ID})
	e.wait(t, a.ID, UntilRunning)
	if _, err := e.m.CloseSession(ctx, tenant, s.ID); err != nil {
		t.Fatal(err)
	}
	sb, _ := e.m.Get(ctx, tenant, a.ID)
	if sb.State != sandbox.StateTerminated || sb.Reason != sandbox.ReasonStoppedBySession {
		t.Fatalf("after Close: %s %q", sb.State, sb.Reason)
	}
	got, err := e.m.CloseSession(ctx, tenant, s.ID)
	if err != nil || got.CloseReason != ReasonClosedByClient {
		t.Fatalf("second Close: %v %q", err, got.CloseReason)
	}
	_, err = e.m.CloseSession(ctx, "t-2", s.ID)
	wantErr(t, err, sandbox.ErrNotFound, sandbox.ReasonSessionNotFound)
}

func TestRecover(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	alive := e.create(t, CreateRequest{Command: []string{"serve"}})
	lost := e.create(t, CreateRequest{})
	e.wait(t, alive.ID, UntilRunning)
	e.wait(t, lost.ID, UntilRunning)
	e.m.Close()

	// While the server is down: one container vanishes, an unknown one
	// appears, and a create was cut short.
	e.rt.Lose(lost.ID)
	e.rt.Adopt("sb-orphan")
	now := e.clk.Now()
	cut := &sandbox.Sandbox{ID: "sb-cut", TenantID: tenant, State: sandbox.StateCreating, CreatedAt: now,
		ExpiresAt: now.Add(time.Hour), MaxLifetime: time.Hour}
	if err := e.st.CreateSandbox(ctx, cut); err != nil {
		t.Fatal(err)
	}
	e.rt.Adopt("sb-cut")

	e.start(t, nil)
	if sb, _ := e.m.Get(ctx, tenant, alive.ID); sb.State != sandbox.StateRunning {
		t.Fatalf("running sandbox after restart: %s", sb.State)
	}
	if sb, _ := e.m.Get(ctx, tenant, lost.ID); sb.State != sandbox.StateFailed || sb.Reason != sandbox.ReasonLost {
		t.Fatalf("lost sandbox: %s %q", sb.State, sb.Reason)
	}
	if sb, _ := e.m.Get(ctx, tenant, "sb-cut"); sb.State != sandbox.StateFailed || sb.Reason != reasonInterrupted {
		t.Fatalf("interrupted create: %s %q", sb.State, sb.Reason)
	}
	if e.rt.Has("sb-orphan") || e.rt.Has("sb-cut") {
		t.Fatal("containers without a live record were kept")
	}
	// The re-attached sandbox's main command is watched again.
	if err := e.rt.Exit(alive.ID, 7); err != nil {
		t.Fatal(err)
	}
	sb := e.wait(t, alive.ID, UntilTerminal)
	if sb.State != sandbox.StateFailed || sb.Exit == nil || sb.Exit.Code != 7 {
		t.Fatalf("re-attached sandbox ended %s %+v", sb.State, sb.Exit)
	}
}

func TestRetentionPurge(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Retention = time.Hour })
	ctx := context.Background()
	done := e.create(t, CreateRequest{Command: []string{"exit", "0"}})
	e.wait(t, done.ID, UntilTerminal)
	idle := e.create(t, CreateRequest{MaxLifetime: lifetime(3 * time.Hour)})
	e.wait(t, idle.ID, UntilRunning)

	e.clk.Advance(30 * time.Minute)
	e.m.Purge(ctx)
	if _, err := e.m.Get(ctx, tenant, done.ID); err != nil {
		t.Fatalf("purged before the retention period: %v", err)
	}
	e.clk.Advance(31 * time.Minute)
	e.m.Purge(ctx)
	_, err := e.m.Get(ctx, tenant, done.ID)
	wantErr(t, err, sandbox.ErrNotFound, sandbox.ReasonSandboxNotFound)
	if sb, err := e.m.Get(ctx, tenant, idle.ID); err != nil || sb.State != sandbox.StateRunning {
		t.Fatalf("running sandbox purged: %v", err)
	}
}

func TestRecoverFinishesStopsAndMissedExits(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	exited := e.create(t, CreateRequest{Command: []string{"serve"}})
	stopping := e.create(t, CreateRequest{})
	e.wait(t, exited.ID, UntilRunning)
	e.wait(t, stopping.ID, UntilRunning)
	e.m.Close()

	// The main command exits while no server watches; a stop was cut short.
	if err := e.rt.Exit(exited.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.UpdateSandbox(ctx, stopping.ID, func(sb *sandbox.Sandbox) error {
		sb.State, sb.Reason = sandbox.StateTerminating, sandbox.ReasonLifetime
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	e.start(t, nil)
	sb := e.wait(t, exited.ID, UntilTerminal)
	if sb.State != sandbox.StateCompleted || sb.Exit == nil || sb.Exit.Code != 0 {
		t.Fatalf("missed exit: %s %+v", sb.State, sb.Exit)
	}
	sb = e.wait(t, stopping.ID, UntilTerminal)
	if sb.State != sandbox.StateTerminated || sb.Reason != sandbox.ReasonLifetime {
		t.Fatalf("interrupted stop: %s %q", sb.State, sb.Reason)
	}
}

func TestQuotaUnderConcurrency(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxSandboxesPerTenant = 5 })
	ctx := context.Background()
	var mu sync.Mutex
	ok, exhausted := 0, 0
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, err := e.m.Create(ctx, tenant, CreateRequest{})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case sandbox.ReasonOf(err) == sandbox.ReasonQuotaExceeded:
				exhausted++
			default:
				t.Errorf("Create: %v", err)
			}
		})
	}
	wg.Wait()
	if ok != 5 || exhausted != 15 {
		t.Fatalf("%d created, %d refused; want 5 and 15", ok, exhausted)
	}
}
