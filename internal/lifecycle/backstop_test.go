package lifecycle

import (
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func withBackstop(d time.Duration) func(*Config) {
	return func(c *Config) { c.LifetimeBackstop = d }
}

// A cold create's start carries the deadline ExpiresAt + LifetimeBackstop;
// the record does not.
func TestBackstopDeadlineColdCreate(t *testing.T) {
	e := newEnv(t, withBackstop(0)) // the default
	sb := e.create(t, CreateRequest{Image: "busybox", Command: []string{"sleep"}, MaxLifetime: lifetime(30 * time.Second)})
	sb = e.wait(t, sb.ID, UntilRunning)
	want := sb.ExpiresAt.Add(DefaultLifetimeBackstop)
	if got := e.rt.StartSpec(sb.ID).Deadline; !got.Equal(want) {
		t.Fatalf("start deadline %v, want %v", got, want)
	}
	if !sb.Start.Deadline.IsZero() {
		t.Fatalf("the record holds a deadline: %v", sb.Start.Deadline)
	}
	// Off: no deadline.
	e2 := newEnv(t, withBackstop(-1))
	sb2 := e2.create(t, CreateRequest{Image: "busybox", Command: []string{"sleep"}})
	e2.wait(t, sb2.ID, UntilRunning)
	if got := e2.rt.StartSpec(sb2.ID).Deadline; !got.IsZero() {
		t.Fatalf("backstop off, start deadline %v", got)
	}
}

// Warm claims get the tenant's deadline: with the claim's start, or, for a
// sandbox claimed RUNNING with no start, a deadline-only start. Idle pool
// sandboxes have none.
func TestBackstopDeadlineWarmClaims(t *testing.T) {
	var starts startCounter
	e := newPoolEnv(t, 2, starts.hook, withBackstop(5*time.Second))
	e.waitIdle(t, 2)
	for _, id := range e.idleIDs(t) {
		if d := e.rt.StartSpec(id).Deadline; !d.IsZero() {
			t.Fatalf("idle pool sandbox %s has deadline %v", id, d)
		}
	}
	a := e.create(t, CreateRequest{Image: poolImage, MaxLifetime: lifetime(10 * time.Second)})
	if a.State != sandbox.StateRunning {
		t.Fatalf("claimed %+v, want RUNNING at once", a)
	}
	want := a.ExpiresAt.Add(5 * time.Second)
	eventually(t, "the deadline handed over", func() bool { return e.rt.StartSpec(a.ID).Deadline.Equal(want) })
	if got := e.rt.StartSpec(a.ID); !got.Empty() || starts.count(a.ID) != 2 {
		t.Fatalf("hand-over start %+v (%d starts), want one deadline-only start after the pool's", got, starts.count(a.ID))
	}

	b := e.create(t, CreateRequest{Image: poolImage, Env: map[string]string{"K": "v"}, MaxLifetime: lifetime(20 * time.Second)})
	if got, want := e.rt.StartSpec(b.ID).Deadline, b.ExpiresAt.Add(5*time.Second); !got.Equal(want) {
		t.Fatalf("claim with a start: deadline %v, want %v", got, want)
	}
}

// An exit marked TimedOut (the agent ended the sandbox at its deadline) is
// a lifetime stop, whether the server sees it live or in Recover.
func TestBackstopExitRecordedAsLifetime(t *testing.T) {
	e := newEnv(t, nil)
	live := e.create(t, CreateRequest{Image: "busybox", Command: []string{"sleep"}})
	idle := e.create(t, CreateRequest{Image: "busybox"})
	plain := e.create(t, CreateRequest{Image: "busybox", Command: []string{"sleep"}})
	for _, sb := range []*sandbox.Sandbox{live, idle, plain} {
		e.wait(t, sb.ID, UntilRunning)
	}
	if err := e.rt.End(live.ID, sandbox.ExitStatus{Code: 143, Signal: "SIGTERM", TimedOut: true}); err != nil {
		t.Fatal(err)
	}
	got := e.wait(t, live.ID, untilTerminal)
	if got.State != sandbox.StateTerminated || got.Reason != sandbox.ReasonLifetime || got.Exit == nil || !got.Exit.TimedOut {
		t.Fatalf("live: %s %q exit %+v; want TERMINATED lifetime", got.State, got.Reason, got.Exit)
	}

	// While the server is down: the agent ends idle's sandbox, plain's
	// main command just exits; Recover tells them apart.
	e.m.Close()
	if err := e.rt.End(idle.ID, sandbox.ExitStatus{Code: 143, Signal: "SIGTERM", TimedOut: true}); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Exit(plain.ID, 3); err != nil {
		t.Fatal(err)
	}
	e.start(t, nil)
	// The fake's containers still run: Recover re-attaches, and the
	// watch finds the exits.
	got = e.wait(t, idle.ID, untilTerminal)
	if got.State != sandbox.StateTerminated || got.Reason != sandbox.ReasonLifetime {
		t.Fatalf("idle after Recover: %s %q; want TERMINATED lifetime", got.State, got.Reason)
	}
	got = e.wait(t, plain.ID, untilTerminal)
	if got.State != sandbox.StateFailed || got.Reason != sandbox.ReasonMainExited {
		t.Fatalf("plain after Recover: %s %q; want FAILED main command exited", got.State, got.Reason)
	}
}

// Recover hands the deadline to every sandbox it re-attaches: one made by
// an older server has none, and a crash may have cut a claim's hand-over.
func TestBackstopDeadlineOnRecover(t *testing.T) {
	var starts startCounter
	e := newEnv(t, withBackstop(time.Minute))
	starts.hook(e.rt)
	sb := e.create(t, CreateRequest{Image: "busybox", Command: []string{"sleep"}})
	e.wait(t, sb.ID, UntilRunning)
	e.m.Close()
	e.start(t, withBackstop(time.Minute))
	want := sb.ExpiresAt.Add(time.Minute)
	eventually(t, "the deadline handed over on Recover", func() bool { return starts.count(sb.ID) == 2 })
	if got := e.rt.StartSpec(sb.ID); !got.Empty() || !got.Deadline.Equal(want) {
		t.Fatalf("start on Recover: %+v, want only the deadline %v", got, want)
	}
}
