package lifecycle

import (
	"context"
	"errors"
	"io"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/lifecycle/lifecycletest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
	"github.com/sbx-run/sbx/internal/store/sqlite"
)

const poolImage = "127.0.0.1:5000/busybox:1.36"

// newPoolEnv is newEnv with a pool of minIdle for poolImage, and a chance
// to script the fake runtime before the manager starts.
func newPoolEnv(t *testing.T, minIdle int, hooks func(*lifecycletest.Runtime), mod func(*Config)) *env {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{rt: lifecycletest.NewRuntime(), st: st, clk: &clock{t: time.Unix(1_800_000_000, 0)}}
	if hooks != nil {
		hooks(e.rt)
	}
	e.start(t, poolConfig(minIdle, mod))
	return e
}

func poolConfig(minIdle int, mod func(*Config)) func(*Config) {
	return func(c *Config) {
		c.Pools = []PoolConfig{{Image: poolImage, MinIdle: minIdle}}
		c.PoolBackoff = 5 * time.Millisecond
		c.PoolMaxBackoff = 20 * time.Millisecond
		if mod != nil {
			mod(c)
		}
	}
}

func (e *env) pool(t *testing.T) PoolStatus {
	t.Helper()
	ps := e.m.Pools()
	if len(ps) != 1 {
		t.Fatalf("Pools() = %+v, want one pool", ps)
	}
	return ps[0]
}

// idleIDs returns the ids of the idle pool sandboxes in the store.
func (e *env) idleIDs(t *testing.T) []string {
	t.Helper()
	ps, err := e.st.ListPoolSandboxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	return ids
}

func (e *env) waitIdle(t *testing.T, n int) {
	t.Helper()
	eventually(t, "pool to hold idle sandboxes", func() bool {
		s := e.m.Pools()[0]
		return s.Idle == n && s.Warming == 0
	})
}

func readFile(t *testing.T, e *env, id, path string) (string, error) {
	t.Helper()
	a, err := e.m.Agent(context.Background(), tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	r, err := a.ReadFile(context.Background(), path)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(r)
	return string(b), err
}

func TestPoolClaimAppliesOwnRequest(t *testing.T) {
	e := newPoolEnv(t, 2, nil, nil)
	e.waitIdle(t, 2)
	warm := e.idleIDs(t)
	e.clk.Advance(time.Hour) // lifetimes count from the claim, not the pool's create

	reqA := CreateRequest{Image: "127.0.0.1:5000/busybox:1.36", Command: []string{"serve-a"}, Env: map[string]string{"A": "1"},
		WorkingDir: "/a", User: "1000", Tags: []string{"a"}, MaxLifetime: lifetime(time.Minute),
		Files: []sandbox.File{{Path: "/etc/a.conf", Content: []byte("a"), Mode: 0o600}}}
	reqB := CreateRequest{Image: poolImage, Command: []string{"serve-b"}, Env: map[string]string{"B": "2"},
		Files: []sandbox.File{{Path: "/etc/b.conf", Content: []byte("b")}}}
	a, b := e.create(t, reqA), e.create(t, reqB)
	for _, sb := range []*sandbox.Sandbox{a, b} {
		if !slices.Contains(warm, sb.ID) {
			t.Fatalf("sandbox %s is not one of the warm ids %v", sb.ID, warm)
		}
		// A claimed sandbox is started before Create returns.
		if sb.Spec.ID != sb.ID || sb.State != sandbox.StateRunning ||
			!slices.Contains(sb.Transitions, sandbox.Transition{State: sandbox.StateCreating, Reason: reasonClaimed, At: sb.CreatedAt}) {
			t.Fatalf("claimed record: %+v", sb)
		}
	}
	if !a.CreatedAt.Equal(e.clk.Now()) || !a.ExpiresAt.Equal(e.clk.Now().Add(time.Minute)) {
		t.Fatalf("claimed at %v expires %v, want now %v + 1m", a.CreatedAt, a.ExpiresAt, e.clk.Now())
	}
	for _, c := range []struct {
		sb    *sandbox.Sandbox
		req   CreateRequest
		other string
	}{{a, reqA, "/etc/b.conf"}, {b, reqB, "/etc/a.conf"}} {
		sb := e.wait(t, c.sb.ID, UntilRunning)
		if sb.State != sandbox.StateRunning {
			t.Fatalf("%s is %s (%s)", sb.ID, sb.State, sb.Reason)
		}
		got := e.rt.StartSpec(sb.ID)
		want := sandbox.StartSpec{Command: c.req.Command, Env: c.req.Env, WorkingDir: c.req.WorkingDir, User: c.req.User, Files: c.req.Files}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s started with %+v, want %+v", sb.ID, got, want)
		}
		if data, err := readFile(t, e, sb.ID, c.req.Files[0].Path); err != nil || data != string(c.req.Files[0].Content) {
			t.Fatalf("own file in %s: %q, %v", sb.ID, data, err)
		}
		if _, err := readFile(t, e, sb.ID, c.other); !errors.Is(err, sandbox.ErrNotFound) {
			t.Fatalf("other request's file %s in %s: err %v, want NotFound", c.other, sb.ID, err)
		}
	}
	if got := e.rt.StartSpec(a.ID).Env; !maps.Equal(got, reqA.Env) {
		t.Fatalf("env of %s = %v", a.ID, got)
	}

	// The pool refills in the background, with new ids.
	e.waitIdle(t, 2)
	s := e.pool(t)
	if s.Hits != 2 || s.Misses != 0 || s.Refills != 4 || s.LastError != "" {
		t.Fatalf("pool status after two claims: %+v", s)
	}
	for _, id := range e.idleIDs(t) {
		if id == a.ID || id == b.ID {
			t.Fatalf("claimed id %s is idle again", id)
		}
	}

	// A request the pool does not match (other resources) starts cold and
	// counts neither as a hit nor a miss.
	c := e.create(t, CreateRequest{Image: poolImage, Resources: sandbox.Resources{CPUMillis: 250}})
	if slices.Contains(e.idleIDs(t), c.ID) || c.Reason == reasonClaimed {
		t.Fatalf("non-matching request was served from the pool: %+v", c)
	}
	if s := e.pool(t); s.Hits != 2 || s.Misses != 0 {
		t.Fatalf("non-matching request counted: %+v", s)
	}
}

func TestPoolSandboxesInvisibleAndFree(t *testing.T) {
	e := newPoolEnv(t, 3, nil, func(c *Config) { c.MaxSandboxesPerTenant = 1 })
	e.waitIdle(t, 3)
	for _, tn := range []string{tenant, "t-2"} {
		list, _, err := e.m.List(context.Background(), tn, store.SandboxFilter{IncludeTerminal: true})
		if err != nil || len(list) != 0 {
			t.Fatalf("tenant %s lists %d sandboxes (%v) with only idle pool sandboxes", tn, len(list), err)
		}
		for _, id := range e.idleIDs(t) {
			if _, err := e.m.Get(context.Background(), tn, id); !errors.Is(err, sandbox.ErrNotFound) {
				t.Fatalf("tenant %s gets idle pool sandbox %s: %v", tn, id, err)
			}
			if _, err := e.m.Stop(context.Background(), tn, id, 0); !errors.Is(err, sandbox.ErrNotFound) {
				t.Fatalf("tenant %s stops idle pool sandbox %s: %v", tn, id, err)
			}
		}
	}
	// Three idle sandboxes, quota 1: the tenant still gets its one.
	sb := e.create(t, CreateRequest{Image: poolImage})
	_, err := e.m.Create(context.Background(), tenant, CreateRequest{Image: poolImage})
	wantErr(t, err, sandbox.ErrResourceExhausted, sandbox.ReasonQuotaExceeded)
	list, _, err := e.m.List(context.Background(), tenant, store.SandboxFilter{})
	if err != nil || len(list) != 1 || list[0].ID != sb.ID {
		t.Fatalf("list after one claim: %v, %v", list, err)
	}
	if list, _, _ := e.m.List(context.Background(), "t-2", store.SandboxFilter{}); len(list) != 0 {
		t.Fatalf("other tenant sees %d sandboxes", len(list))
	}
}

func TestPoolSurvivesRestart(t *testing.T) {
	e := newPoolEnv(t, 2, nil, nil)
	e.waitIdle(t, 2)
	before := e.idleIDs(t)
	e.m.Close()

	e.start(t, poolConfig(2, nil))
	if s := e.pool(t); s.Idle != 2 {
		t.Fatalf("after restart the pool has %d idle sandboxes, want the 2 it had", s.Idle)
	}
	if got := e.idleIDs(t); !slices.Equal(got, before) || e.rt.Len() != 2 {
		t.Fatalf("after restart idle ids %v (runtime has %d), want %v", got, e.rt.Len(), before)
	}
	sb := e.create(t, CreateRequest{Image: poolImage, Command: []string{"exit", "0"}})
	if !slices.Contains(before, sb.ID) {
		t.Fatalf("create after restart did not use a re-found sandbox: %s not in %v", sb.ID, before)
	}
	if sb = e.wait(t, sb.ID, UntilTerminal); sb.State != sandbox.StateCompleted {
		t.Fatalf("claimed sandbox ended %s (%s)", sb.State, sb.Reason)
	}
	e.waitIdle(t, 2)

	// An idle sandbox whose container died while the server was down is
	// replaced; a server without the pool removes its sandboxes.
	lost := e.idleIDs(t)[0]
	e.m.Close()
	e.rt.Lose(lost)
	e.start(t, poolConfig(2, nil))
	e.waitIdle(t, 2)
	if slices.Contains(e.idleIDs(t), lost) {
		t.Fatalf("lost sandbox %s still idle", lost)
	}
	idle := e.idleIDs(t)
	e.m.Close()
	e.start(t, nil)
	if ids := e.idleIDs(t); len(ids) != 0 {
		t.Fatalf("unconfigured pool's sandboxes kept in the store: %v", ids)
	}
	for _, id := range idle {
		if e.rt.Has(id) {
			t.Fatalf("unconfigured pool's sandbox %s kept in the runtime", id)
		}
	}
}

func TestPoolBacksOffAndReportsPullFailure(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	e := newPoolEnv(t, 2, func(rt *lifecycletest.Runtime) {
		rt.CreateErr = func(spec sandbox.Spec) error {
			if broken.Load() {
				return sandbox.NotFound(sandbox.ReasonImageNotFound, "image %q: no such tag", spec.Image)
			}
			return nil
		}
	}, nil)
	eventually(t, "four failed refills", func() bool { return e.pool(t).RefillFailures >= 4 })
	s := e.pool(t)
	if !strings.Contains(s.LastError, sandbox.ReasonImageNotFound) || s.LastErrorAt.IsZero() {
		t.Fatalf("last error %q at %v, want the pull failure", s.LastError, s.LastErrorAt)
	}
	if s.Backoff != 20*time.Millisecond || s.RetryAt.IsZero() || s.Idle != 0 {
		t.Fatalf("after %d failures: back-off %v (want the 20ms maximum), retry at %v, idle %d", s.RefillFailures, s.Backoff, s.RetryAt, s.Idle)
	}
	// A create meanwhile misses and fails with the same reason.
	sb := e.create(t, CreateRequest{Image: poolImage})
	if sb = e.wait(t, sb.ID, UntilTerminal); sb.State != sandbox.StateFailed || !strings.Contains(sb.Reason, sandbox.ReasonImageNotFound) {
		t.Fatalf("create during pull failures: %s (%s)", sb.State, sb.Reason)
	}
	if s := e.pool(t); s.Misses != 1 {
		t.Fatalf("misses = %d, want 1", s.Misses)
	}
	broken.Store(false)
	e.waitIdle(t, 2)
	if s := e.pool(t); s.LastError != "" || s.Backoff != 0 {
		t.Fatalf("after recovery: %+v", s)
	}
}

func TestPoolBurstLargerThanPool(t *testing.T) {
	var gated atomic.Bool
	gate, done := make(chan struct{}), make(chan struct{})
	e := newPoolEnv(t, 3, func(rt *lifecycletest.Runtime) {
		rt.CreateErr = func(sandbox.Spec) error {
			if gated.Load() {
				select {
				case <-gate:
				case <-done:
				}
			}
			return nil
		}
	}, func(c *Config) { c.MaxSandboxesPerTenant = 6 })
	e.waitIdle(t, 3)
	warm := e.idleIDs(t)
	gated.Store(true) // refills and cold creates wait until released
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(func() { close(done) })

	const n = 10
	type result struct {
		sb  *sandbox.Sandbox
		err error
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sb, err := e.m.Create(context.Background(), tenant, CreateRequest{Image: poolImage})
			results <- result{sb, err}
		}()
	}
	wg.Wait()
	close(results)
	var ok []*sandbox.Sandbox
	hits, quota := 0, 0
	for r := range results {
		switch {
		case r.err == nil:
			ok = append(ok, r.sb)
			if slices.Contains(warm, r.sb.ID) {
				hits++
			}
		case errors.Is(r.err, sandbox.ErrResourceExhausted) && sandbox.ReasonOf(r.err) == sandbox.ReasonQuotaExceeded && sandbox.RetryAfterOf(r.err) > 0:
			quota++
		default:
			t.Fatalf("burst create failed with %v, want success or QUOTA_EXCEEDED", r.err)
		}
	}
	if len(ok) != 6 || quota != 4 || hits != 3 {
		t.Fatalf("burst of %d: %d created (%d from the pool), %d QUOTA_EXCEEDED; want 6 (3), 4", n, len(ok), hits, quota)
	}
	if s := e.pool(t); s.Hits != 3 || s.Misses != 3 {
		t.Fatalf("pool counted %d hits, %d misses; want 3 and 3", s.Hits, s.Misses)
	}
	release()
	for _, sb := range ok {
		if got := e.wait(t, sb.ID, UntilRunning); got.State != sandbox.StateRunning {
			t.Fatalf("%s: %s (%s)", sb.ID, got.State, got.Reason)
		}
	}
	e.waitIdle(t, 3)
}

func TestPoolLearnsFromMisses(t *testing.T) {
	var gated atomic.Bool
	gate, done := make(chan struct{}), make(chan struct{})
	e := newPoolEnv(t, 1, func(rt *lifecycletest.Runtime) {
		rt.CreateErr = func(sandbox.Spec) error {
			if gated.Load() {
				select {
				case <-gate:
				case <-done:
				}
			}
			return nil
		}
	}, func(c *Config) { c.Pools[0].Max = 3 })
	t.Cleanup(func() { close(done) })
	e.waitIdle(t, 1)
	if s := e.pool(t); s.Target != 1 {
		t.Fatalf("target before demand: %d", s.Target)
	}
	gated.Store(true)
	for i := 0; i < 4; i++ {
		e.create(t, CreateRequest{Image: poolImage})
	}
	// One hit, three misses: the target grows by the misses, up to max.
	if s := e.pool(t); s.Hits != 1 || s.Misses != 3 || s.Target != 3 {
		t.Fatalf("after a burst of 4 on a pool of 1: %+v", s)
	}
	close(gate)
	e.waitIdle(t, 3)
}

func TestPoolConfigValidation(t *testing.T) {
	for _, c := range []struct {
		name  string
		pools []PoolConfig
	}{
		{"bad image", []PoolConfig{{Image: "UPPER:bad ref", MinIdle: 1}}},
		{"negative", []PoolConfig{{Image: "busybox", MinIdle: -1}}},
		{"too big", []PoolConfig{{Image: "busybox", MinIdle: MaxPoolSize + 1}}},
		{"max below min", []PoolConfig{{Image: "busybox", MinIdle: 3, Max: 2}}},
		{"duplicate", []PoolConfig{{Image: "busybox", MinIdle: 1}, {Image: "docker.io/library/busybox:latest", MinIdle: 2}}},
	} {
		if _, err := New(lifecycletest.NewRuntime(), nil, Config{Pools: c.pools}); err == nil {
			t.Errorf("%s: New accepted %+v", c.name, c.pools)
		}
	}
}

func TestPoolReplacesDeadIdleSandbox(t *testing.T) {
	e := newPoolEnv(t, 2, nil, func(c *Config) { c.PoolCheckInterval = 5 * time.Millisecond })
	e.waitIdle(t, 2)
	dead := e.idleIDs(t)[0]
	e.rt.Lose(dead)
	eventually(t, "the dead sandbox to be replaced", func() bool {
		ids := e.idleIDs(t)
		return len(ids) == 2 && !slices.Contains(ids, dead)
	})
	e.waitIdle(t, 2)
	for i := 0; i < 2; i++ {
		sb := e.create(t, CreateRequest{Image: poolImage})
		if sb.ID == dead {
			t.Fatalf("claimed the dead sandbox %s", dead)
		}
		if got := e.wait(t, sb.ID, UntilRunning); got.State != sandbox.StateRunning {
			t.Fatalf("%s: %s (%s)", sb.ID, got.State, got.Reason)
		}
	}
}

// startCounter counts the fake runtime's Start calls per sandbox, failing
// empty starts while failEmpty is set.
type startCounter struct {
	mu        sync.Mutex
	n         map[string]int
	failEmpty atomic.Bool
}

func (c *startCounter) hook(rt *lifecycletest.Runtime) {
	c.n = map[string]int{}
	rt.StartErr = func(id string, start sandbox.StartSpec) error {
		c.mu.Lock()
		c.n[id]++
		c.mu.Unlock()
		if c.failEmpty.Load() && start.Empty() {
			return errors.New("scripted start failure")
		}
		return nil
	}
}

func (c *startCounter) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

func TestPoolClaimOfPreStartedSandbox(t *testing.T) {
	var starts startCounter
	e := newPoolEnv(t, 2, starts.hook, nil)
	e.waitIdle(t, 2)
	warm := e.idleIDs(t)
	for _, id := range warm {
		if n := starts.count(id); n != 1 || !reflect.DeepEqual(e.rt.StartSpec(id), sandbox.StartSpec{}) {
			t.Fatalf("idle %s: %d starts, start %+v; want one empty start in the pool", id, n, e.rt.StartSpec(id))
		}
	}

	// A request with no start of its own is RUNNING from the claim on,
	// with no further start.
	a := e.create(t, CreateRequest{Image: poolImage, Tags: []string{"a"}})
	wantTr := []sandbox.Transition{
		{State: sandbox.StatePending, Reason: sandbox.ReasonRequested, At: a.CreatedAt},
		{State: sandbox.StateCreating, Reason: reasonClaimed, At: a.CreatedAt},
		{State: sandbox.StateRunning, Reason: sandbox.ReasonStarted, At: a.CreatedAt},
	}
	sameTr := func(got []sandbox.Transition) bool {
		return slices.EqualFunc(got, wantTr, func(x, y sandbox.Transition) bool {
			return x.State == y.State && x.Reason == y.Reason && x.At.Equal(y.At)
		})
	}
	if !slices.Contains(warm, a.ID) || a.State != sandbox.StateRunning || !a.StartedAt.Equal(a.CreatedAt) || !sameTr(a.Transitions) {
		t.Fatalf("claimed record: %+v", a)
	}
	if n := starts.count(a.ID); n != 1 {
		t.Fatalf("%s started %d times, want only the pool's start", a.ID, n)
	}
	got, err := e.m.Get(context.Background(), tenant, a.ID)
	if err != nil || got.State != sandbox.StateRunning || !slices.Equal(got.Tags, []string{"a"}) || !sameTr(got.Transitions) {
		t.Fatalf("stored record: %+v, %v", got, err)
	}
	if _, err := e.m.Agent(context.Background(), tenant, a.ID); err != nil {
		t.Fatalf("agent of the claimed sandbox: %v", err)
	}

	// A request with a start of its own gets exactly it, over the pool's.
	req := CreateRequest{Image: poolImage, Env: map[string]string{"B": "2"}, WorkingDir: "/b"}
	b := e.create(t, req)
	if b.State != sandbox.StateRunning || starts.count(b.ID) != 2 {
		t.Fatalf("claimed %+v with %d starts, want RUNNING after a second start", b, starts.count(b.ID))
	}
	if got, want := e.rt.StartSpec(b.ID), (sandbox.StartSpec{Env: req.Env, WorkingDir: "/b"}); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s started with %+v, want %+v", b.ID, got, want)
	}
}

func TestPoolClaimWhenPreStartFailed(t *testing.T) {
	var starts startCounter
	starts.failEmpty.Store(true)
	e := newPoolEnv(t, 1, starts.hook, nil)
	e.waitIdle(t, 1)
	if s := e.pool(t); s.RefillFailures != 0 {
		t.Fatalf("a failed pre-start failed the refill: %+v", s)
	}
	starts.failEmpty.Store(false)
	// The sandbox serves, started by the claim.
	a := e.create(t, CreateRequest{Image: poolImage})
	if a.State != sandbox.StateRunning || a.Reason != sandbox.ReasonStarted || starts.count(a.ID) != 2 {
		t.Fatalf("claimed %+v with %d starts, want RUNNING after the claim's start", a, starts.count(a.ID))
	}
}
