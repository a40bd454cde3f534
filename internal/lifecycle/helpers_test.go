package lifecycle

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/lifecycle/lifecycletest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
	"github.com/sbx-run/sbx/internal/store/sqlite"
)

// clock is a settable clock for lifetime, lease and retention tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	m   *Manager
	rt  *lifecycletest.Runtime
	st  store.Store
	clk *clock
}

const tenant = "t-1"

func testConfig(clk *clock) Config {
	return Config{
		Linger:        time.Millisecond,
		SweepInterval: 5 * time.Millisecond,
		PurgeInterval: time.Hour,
		// Off, so that starts are as the tests script them;
		// backstop_test.go turns it on.
		LifetimeBackstop: -1,
		// Room for every test's creates in quick succession, whatever
		// the machine's CPU count (the default scales with it);
		// admission_test.go sets its own.
		MaxConcurrentCreates: 8,
		CreateQueue:          8,
		Logger:               slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:                  clk.Now,
	}
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{rt: lifecycletest.NewRuntime(), st: st, clk: &clock{t: time.Unix(1_800_000_000, 0)}}
	e.start(t, mod)
	return e
}

// start starts a (new) manager on e's store and runtime.
func (e *env) start(t *testing.T, mod func(*Config)) {
	t.Helper()
	cfg := testConfig(e.clk)
	if mod != nil {
		mod(&cfg)
	}
	m, err := New(e.rt, e.st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	e.m = m
}

func (e *env) create(t *testing.T, req CreateRequest) *sandbox.Sandbox {
	t.Helper()
	sb, err := e.m.Create(context.Background(), tenant, req)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return sb
}

func (e *env) wait(t *testing.T, id string, until Until) *sandbox.Sandbox {
	t.Helper()
	sb, ok, err := e.m.Wait(context.Background(), tenant, id, until, time.Minute)
	if err != nil || !ok {
		t.Fatalf("Wait(%s): ok=%v err=%v", id, ok, err)
	}
	return sb
}

func wantErr(t *testing.T, err error, kind error, reason string) {
	t.Helper()
	if !errors.Is(err, kind) || sandbox.ReasonOf(err) != reason {
		t.Fatalf("got error %v (reason %q), want kind %v reason %s", err, sandbox.ReasonOf(err), kind, reason)
	}
}

func states(sb *sandbox.Sandbox) []sandbox.State {
	var out []sandbox.State
	for _, tr := range sb.Transitions {
		out = append(out, tr.State)
	}
	return out
}

func lifetime(d time.Duration) *time.Duration { return &d }

// eventually polls cond; for background effects with no notification
// (container deletion after linger).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
