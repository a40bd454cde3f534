package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
)

// reasonWarm is the CREATING reason of a sandbox claimed from a warm pool.
const reasonWarm = "creating from a warm pool"

// waitPool polls ListPools until the only pool satisfies cond.
func waitPool(t testing.TB, ctx context.Context, c *sbx.Client, what string, cond func(sbx.PoolInfo) bool) sbx.PoolInfo {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ps, err := c.ListPools(ctx)
		if err != nil {
			t.Fatalf("ListPools: %v", err)
		}
		if len(ps) != 1 {
			t.Fatalf("ListPools = %+v, want one pool", ps)
		}
		if cond(ps[0]) {
			return ps[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool never got %s: %+v", what, ps[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func claimedWarm(info sbx.Info) bool {
	for _, tr := range info.Transitions {
		if tr.Reason == reasonWarm {
			return true
		}
	}
	return false
}

// TestWarmPool runs a server with a busybox pool: creates that hit it run
// their own command, env, working dir and files (and none of another's),
// `sbx pools` and /metrics show the hits, the pool refills, a restarted
// server re-finds its idle sandboxes, and a server without the pool
// removes them.
func TestWarmPool(t *testing.T) {
	s := startServer(t, "--pool", "busybox=2:3")
	c := s.client()
	ctx := ctxT(t, 4*time.Minute)
	waitPool(t, ctx, c, "2 idle", func(p sbx.PoolInfo) bool { return p.Idle == 2 })

	a, err := c.Run(ctx, sbx.Image("busybox"),
		sbx.Command("sh", "-c", `echo "$GREETING from $(pwd) as $(id -u)"; cat /etc/msg`),
		sbx.Env(map[string]string{"GREETING": "hello-a"}), sbx.WorkingDir("/tmp"),
		sbx.MountedFile("/etc/msg", []byte("file-a")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Run(ctx, sbx.Image("busybox"), sbx.Env(map[string]string{"GREETING": "hello-b"}))
	if err != nil {
		t.Fatal(err)
	}
	info, err := a.WaitUntilComplete(ctx)
	if err != nil || info.State != sbx.StateCompleted {
		t.Fatalf("warm sandbox a: %+v, %v", info, err)
	}
	var out bytes.Buffer
	if err := a.Logs(ctx, &out, &out, sbx.LogOptions{}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "hello-a from /tmp as 0\nfile-a" {
		t.Errorf("warm sandbox a printed %q", out.String())
	}
	if err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for _, sb := range []*sbx.Sandbox{a, b} {
		if info, _ := sb.Refresh(ctx); !claimedWarm(info) {
			t.Errorf("%s was not served from the pool: %+v", sb.ID(), info.Transitions)
		}
	}
	p, err := b.Exec(ctx, []string{"sh", "-c", "echo $GREETING; pwd"})
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(p.Stdout).ReadString('\n')
	p.Wait()
	if line != "hello-b\n" {
		t.Errorf("warm sandbox b's env: %q", line)
	}
	if _, err := b.ReadFile(ctx, "/etc/msg"); !errors.Is(err, sbx.ErrNotFound) {
		t.Errorf("sandbox b has sandbox a's file /etc/msg: %v", err)
	}

	// The pool refills; `sbx pools` and /metrics show the hits.
	waitPool(t, ctx, c, "a refill after two hits", func(p sbx.PoolInfo) bool { return p.Idle == 2 && p.Refills >= 4 })
	stdout, stderr, code := s.cli("", "pools", "--json")
	var views []poolView
	if code != 0 || json.Unmarshal([]byte(stdout), &views) != nil || len(views) != 1 || views[0].Hits != 2 || views[0].Idle != 2 {
		t.Errorf("sbx pools --json: code %d %q %q", code, stdout, stderr)
	}
	stdout, _, code = s.cli("", "pools")
	if code != 0 || !strings.Contains(stdout, "HITS") || !strings.Contains(stdout, "busybox") {
		t.Errorf("sbx pools: code %d %q", code, stdout)
	}
	if m := metrics(t, s); !strings.Contains(m, `sbx_pool_hits_total{pool="index.docker.io/library/busybox:latest"} 2`) ||
		!strings.Contains(m, "sbx_pool_refill_duration_seconds_bucket") {
		t.Errorf("/metrics lacks the pool's hits or refill times")
	}

	// A restarted server re-finds the idle sandboxes instead of making new ones.
	s.terminate()
	s.start()
	if ps, err := c.ListPools(ctx); err != nil || len(ps) != 1 || ps[0].Idle != 2 || ps[0].Refills != 0 {
		t.Errorf("pool after restart: %+v, %v; want the 2 idle sandboxes re-found", ps, err)
	}
	sb, err := c.Run(ctx, sbx.Image("busybox"), sbx.Command("true"))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := sb.WaitUntilComplete(ctx); err != nil || !claimedWarm(info) || info.State != sbx.StateCompleted {
		t.Errorf("create after restart: %+v, %v", info, err)
	}

	// Without the pool, the server removes its idle sandboxes (the cleanup
	// checks nothing is left on the host).
	s.terminate()
	s.args = withoutPoolFlags(s.args)
	s.start()
	if ps, err := c.ListPools(ctx); err != nil || len(ps) != 0 {
		t.Errorf("pools of a server without --pool: %+v, %v", ps, err)
	}
}

// poolView is the part of `sbx pools --json` the test reads.
type poolView struct {
	Idle int   `json:"idle"`
	Hits int64 `json:"hits"`
}

func withoutPoolFlags(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--pool" {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// BenchmarkWarmCreateToFirstOutput is BenchmarkCreateToFirstOutput with a
// busybox pool that always has a sandbox ready: Run, then the first byte of
// an exec's output. Compare with the cold figures of the same machine.
//
//	go test ./test/e2e -run '^$' -bench 'CreateToFirstOutput' -benchtime 50x
func BenchmarkWarmCreateToFirstOutput(b *testing.B) {
	s := startServer(b, "--pool", "busybox=2:3")
	c := s.client()
	ctx := ctxT(b, 10*time.Minute)
	ready := func() {
		waitPool(b, ctx, c, "2 idle", func(p sbx.PoolInfo) bool { return p.Idle >= 2 })
	}
	ready()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		sb, err := c.Run(ctx, sbx.Image("busybox"))
		if err != nil {
			b.Fatal(err)
		}
		p, err := sb.Exec(ctx, []string{"echo", "hi"})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bufio.NewReader(p.Stdout).ReadByte(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		p.Wait()
		if !claimedWarm(sb.Info()) {
			b.Fatalf("%s missed the pool", sb.ID())
		}
		if err := sb.Delete(ctx); err != nil {
			b.Fatal(err)
		}
		ready() // measure hits only: let the pool refill between runs
		b.StartTimer()
	}
	reportPercentiles(b, lat)
	b.StopTimer()
	s.terminate()
	s.args = withoutPoolFlags(s.args)
	s.start()
}
