package agent_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// BenchmarkAgentDeadlineHandOver is what the lifetime backstop adds to a
// warm pool sandbox claimed with no start of its own: the deadline-only
// Init the server sends it (lifecycle's handOverDeadline), on an agent
// started as a runtime starts it, pre-started empty and idle past its
// deferred work, with the claim's first exec done. It reports the median
// CPU of the agent for that call ("handover-cpu-µs", summed over its
// threads) and its context switches ("handover-switches").
func BenchmarkAgentDeadlineHandOver(b *testing.B) {
	bin := benchAgentBinary(b)
	dir, err := os.MkdirTemp("", "ho")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var cpu, switches []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, s := handOverOnce(b, bin, filepath.Join(dir, strconv.Itoa(i)))
		cpu, switches = append(cpu, c), append(switches, s)
	}
	b.StopTimer()
	b.ReportMetric(median(cpu), "handover-cpu-µs")
	b.ReportMetric(median(switches), "handover-switches")
}

func handOverOnce(b *testing.B, bin, stateDir string) (cpu, switches float64) {
	cmd := exec.Command(bin, "--state-dir", stateDir, "--"+agent.ConnFlag+"=3")
	cmd.Env = append(os.Environ(), agent.StartEnv...)
	host, sandboxEnd, err := agent.StartPair()
	if err != nil {
		b.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{sandboxEnd}
	c := agent.Dial(filepath.Join(stateDir, agent.SocketName))
	defer c.UseConn(host)()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sandboxEnd.Close()
	if err := c.WaitStarting(ctx); err != nil {
		b.Fatal(err)
	}
	img := sandbox.ImageConfig{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}
	if err := c.Init(ctx, agent.InitSpec{Image: img}); err != nil {
		b.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // idle in the pool, deferred work done
	p, err := c.Exec(ctx, sandbox.ExecSpec{Command: []string{"true"}})
	if err != nil {
		b.Fatal(err)
	}
	for {
		ev, err := p.Recv()
		if err != nil {
			b.Fatal(err)
		}
		if ev.Kind == sandbox.EventExit {
			break
		}
	}
	p.Close()
	pid := cmd.Process.Pid
	cpu0, _ := procCost(pid)
	sw0 := switchCount(pid)
	if err := c.Init(ctx, agent.InitSpec{Image: img, Start: sandbox.StartSpec{Deadline: time.Now().Add(time.Hour)}}); err != nil {
		b.Fatal(err)
	}
	cpu1, _ := procCost(pid)
	return cpu1 - cpu0, switchCount(pid) - sw0
}
