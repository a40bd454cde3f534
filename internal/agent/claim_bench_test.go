package agent_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// BenchmarkAgentClaimedLife is what a warm pool sandbox's agent costs from
// its claim to its end, as the pool_rate scenario uses it: an agent started
// as a runtime starts it, pre-started with an empty Init (as a pool refill
// does) and left idle past its deferred work, then one exec of `echo hi`
// read to its exit, then SIGKILL (a delete). It reports, medians: the
// agent's CPU during the exec ("exec-cpu-µs", summed over its threads, its
// child not included), its context switches then ("exec-switches"), and
// its CPU from the SIGKILL until it was reaped ("exit-cpu-µs", from the
// rusage of the reaped process less what it had before).
// SBX_AGENT_BIN benchmarks another build of the agent.
func BenchmarkAgentClaimedLife(b *testing.B) {
	bin := benchAgentBinary(b)
	dir, err := os.MkdirTemp("", "cl")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var execCPU, switches, exitCPU []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e, s, x := claimedLifeOnce(b, bin, filepath.Join(dir, strconv.Itoa(i)))
		execCPU, switches, exitCPU = append(execCPU, e), append(switches, s), append(exitCPU, x)
	}
	b.StopTimer()
	b.ReportMetric(median(execCPU), "exec-cpu-µs")
	b.ReportMetric(median(switches), "exec-switches")
	b.ReportMetric(median(exitCPU), "exit-cpu-µs")
}

func claimedLifeOnce(b *testing.B, bin, stateDir string) (execCPU, switches, exitCPU float64) {
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
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	sandboxEnd.Close()
	if err := c.WaitStarting(ctx); err != nil {
		b.Fatal(err)
	}
	err = c.Init(ctx, agent.InitSpec{Image: sandbox.ImageConfig{
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	}})
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // idle in the pool, deferred work done
	pid := cmd.Process.Pid
	cpu0, _ := procCost(pid)
	sw0 := switchCount(pid)
	p, err := c.Exec(ctx, sandbox.ExecSpec{Command: []string{"echo", "hi"}})
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
	cpu1, _ := procCost(pid)
	sw1 := switchCount(pid)
	killed = true
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	total := float64(cmd.ProcessState.SystemTime()+cmd.ProcessState.UserTime()) / float64(time.Microsecond)
	// rusage counts in clock ticks on some kernels; schedstat is exact.
	// Both count the agent alone (its reaped children are apart).
	return cpu1 - cpu0, sw1 - sw0, max(total-cpu1, 0)
}

// switchCount sums the voluntary and involuntary context switches of every
// thread of pid.
func switchCount(pid int) float64 {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/status")
	var n float64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 2 && strings.HasSuffix(f[0], "ctxt_switches:") {
				v, _ := strconv.ParseFloat(f[1], 64)
				n += v
			}
		}
	}
	return n
}
