package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
)

// backstopLifetime is the lifetime of the test's sandboxes: long enough to
// create them all and stop the server before it runs out (the server would
// otherwise stop them itself), short enough to wait for.
const backstopLifetime = 8 * time.Second

// TestLifetimeBackstop: sandboxes whose lifetime runs out while the server
// is down are ended by their agents (the lifetime backstop, 1 s after the
// lifetime here): a cold one whose main command ignores SIGTERM and left a
// process in a session of its own, an idle cold one, a warm one claimed
// with a start of its own and one claimed with none (which gets its
// deadline handed over). No process is left in their cgroups while the
// server is still down; the server, back, reports them TERMINATED for
// reason "lifetime", and nothing is left on the host (the cleanup's leak
// check).
func TestLifetimeBackstop(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "backstop.yaml")
	if err := os.WriteFile(cfg, []byte("lifetimeBackstop: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--config", cfg, "--pool", "busybox=2")
	// Run before the harness's cleanup (which deletes every sandbox and
	// checks for leaks), also when the test failed half way: a server
	// without the pool, which removes the pool's idle sandboxes.
	t.Cleanup(func() {
		if s.running() {
			s.terminate()
		}
		s.args = withoutPoolFlags(s.args)
		s.start()
	})
	c := s.client()
	ctx := ctxT(t, 4*time.Minute)
	waitPool(t, ctx, c, "2 idle", func(p sbx.PoolInfo) bool { return p.Idle == 2 })

	warmBare, err := c.Run(ctx, sbx.Image("busybox"), sbx.Lifetime(backstopLifetime))
	if err != nil {
		t.Fatal(err)
	}
	warmOwn, err := c.Run(ctx, sbx.Image("busybox"), sbx.Lifetime(backstopLifetime), sbx.Env(map[string]string{"K": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	// Resources other than the pool's: these start cold.
	coldMain, err := c.Run(ctx, sbx.Image("busybox"), sbx.Lifetime(backstopLifetime), sbx.Resources{MemoryBytes: 256 << 20},
		sbx.Command("sh", "-c", `trap "" TERM; while :; do sleep 1; done`))
	if err != nil {
		t.Fatal(err)
	}
	coldIdle, err := c.Run(ctx, sbx.Image("busybox"), sbx.Lifetime(backstopLifetime), sbx.Resources{MemoryBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	all := []*sbx.Sandbox{warmBare, warmOwn, coldMain, coldIdle}
	for _, sb := range all {
		if err := sb.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, sb := range []*sbx.Sandbox{warmBare, warmOwn} {
		if info, _ := sb.Refresh(ctx); !claimedWarm(info) {
			t.Fatalf("%s was not served from the pool: %+v", sb.ID(), info.Transitions)
		}
	}
	// A process in a session of its own: only kill(-1) (or the end of
	// the pid namespace) reaches it.
	p, err := coldMain.Exec(ctx, []string{"sh", "-c", "setsid sleep 1000 </dev/null >/dev/null 2>&1 &"})
	if err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(); err != nil || code != 0 {
		t.Fatalf("start a detached process: %d, %v", code, err)
	}
	// The claim with no start gets its deadline in the background.
	waitLog(t, s, "lifetime deadline handed over", warmBare.ID())

	for _, sb := range all {
		info, err := sb.Refresh(ctx)
		if err != nil || info.State != sbx.StateRunning {
			t.Fatalf("%s before the server stops: %s, %v; the setup took longer than the lifetime (%s)", sb.ID(), info.State, err, backstopLifetime)
		}
		if n := cgroupProcs(t, sb.ID()); n == 0 {
			t.Fatalf("%s: no process found in its cgroups while it runs; the check below would prove nothing", sb.ID())
		}
	}
	s.kill9()

	// The server is down: the agents end their sandboxes at the deadline.
	deadline := time.Now().Add(backstopLifetime + 2*time.Minute)
	for _, sb := range all {
		for cgroupProcs(t, sb.ID()) > 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if n := cgroupProcs(t, sb.ID()); n > 0 {
			t.Errorf("%s: %d processes still in its cgroups long after its lifetime with the server down", sb.ID(), n)
		}
	}
	if s.running() {
		t.Error("the server ran while the sandboxes ended")
	}

	s.start()
	for _, sb := range all {
		info, err := c.FromID(sb.ID()).Refresh(ctx)
		if err != nil || info.State != sbx.StateTerminated || info.Reason != "lifetime" {
			t.Errorf("%s after the restart: %s %q, %v; want TERMINATED lifetime", sb.ID(), info.State, info.Reason, err)
		}
		if sb == coldMain && (!info.Exited || info.Signal != "SIGKILL") {
			t.Errorf("%s's main command (it ignores SIGTERM): exited %v, signal %q; want SIGKILL", sb.ID(), info.Exited, info.Signal)
		}
	}
}

// cgroupProcs returns how many processes the cgroups of sandbox id hold
// (in every hierarchy: the host may mount cgroup v1 and v2 side by side).
func cgroupProcs(t *testing.T, id string) int {
	t.Helper()
	v1, _ := filepath.Glob("/sys/fs/cgroup/*/sbx/" + id + "/cgroup.procs")
	v2, _ := filepath.Glob("/sys/fs/cgroup/sbx/" + id + "/cgroup.procs")
	n := 0
	for _, f := range append(v1, v2...) {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // removed meanwhile
		}
		n += len(strings.Fields(string(b)))
	}
	return n
}

// waitLog waits (two minutes at most) for a line of the server's log that
// holds msg and id.
func waitLog(t *testing.T, s *server, msg, id string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		for _, line := range strings.Split(s.log(), "\n") {
			if strings.Contains(line, msg) && strings.Contains(line, `"`+id+`"`) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server never logged %q for %s", msg, id)
		}
	}
}
