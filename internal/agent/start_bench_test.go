package agent_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/testenv"
)

// BenchmarkAgentStart is the agent's start as a runtime sees it: from
// exec to the first answered Ping, once over a connection the host made
// before the exec (the socketpair crun and runc pass, "conn") and once by
// the socket path it listens on ("socket", what runsc and recovery use),
// with the environment a runtime gives it (agent.StartEnv).
// Besides the wall time (noisy on a shared machine) it reports what the
// agent spent to get there: its CPU time (summed over its threads'
// schedstat, in µs) and its page faults, both read the moment it answered.
// SBX_AGENT_BIN benchmarks another build of the agent, and
// SBX_AGENT_NO_START_ENV=1 runs it without agent.StartEnv.
func BenchmarkAgentStart(b *testing.B) {
	bin := benchAgentBinary(b)
	b.Run("conn", func(b *testing.B) { benchAgentStart(b, bin, true) })
	b.Run("socket", func(b *testing.B) { benchAgentStart(b, bin, false) })
}

// benchAgentBinary is the agent a benchmark runs: SBX_AGENT_BIN, else a
// fresh build of this tree's.
func benchAgentBinary(b *testing.B) string {
	if bin := os.Getenv("SBX_AGENT_BIN"); bin != "" {
		return bin
	}
	return testenv.AgentBinary(b)
}

func benchAgentStart(b *testing.B, bin string, passConn bool) {
	dir, err := os.MkdirTemp("", "as")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var walls, cpus, faults []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		stateDir := filepath.Join(dir, strconv.Itoa(i))
		wall, cpu, flt := startOnce(b, bin, stateDir, passConn)
		walls, cpus, faults = append(walls, wall), append(cpus, cpu), append(faults, flt)
	}
	b.StopTimer()
	b.ReportMetric(median(walls), "p50-wall-µs")
	b.ReportMetric(median(cpus), "p50-cpu-µs")
	b.ReportMetric(median(faults), "faults")
}

// startOnce runs the agent once until it answers, then stops it.
func startOnce(b *testing.B, bin, stateDir string, passConn bool) (wall, cpu, faults float64) {
	cmd := exec.Command(bin, "--state-dir", stateDir)
	cmd.Env = append(os.Environ(), agent.StartEnv...)
	if os.Getenv("SBX_AGENT_NO_START_ENV") != "" {
		cmd.Env = os.Environ()
	}
	var c *agent.Client
	var host net.Conn
	if passConn {
		var sandboxEnd *os.File
		var err error
		host, sandboxEnd, err = agent.StartPair()
		if err != nil {
			b.Fatal(err)
		}
		cmd.ExtraFiles = []*os.File{sandboxEnd}
		defer sandboxEnd.Close()
		cmd.Args = append(cmd.Args, "--"+agent.ConnFlag+"=3")
	}
	c = agent.Dial(filepath.Join(stateDir, agent.SocketName))
	if passConn {
		defer c.UseConn(host)()
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	if passConn {
		cmd.ExtraFiles[0].Close()
	} else {
		// What runsc and recovery do: find the socket, then ask.
		for {
			if _, err := os.Lstat(filepath.Join(stateDir, agent.SocketName)); err == nil {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	if err := c.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	wall = float64(time.Since(start).Microseconds())
	cpu, faults = procCost(cmd.Process.Pid)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return wall, cpu, faults
}

// procCost returns the CPU time (µs) of pid's threads and its minor faults.
func procCost(pid int) (cpuMicros, faults float64) {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	for _, t := range tasks {
		if b, err := os.ReadFile(t); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				ns, _ := strconv.ParseFloat(f[0], 64)
				cpuMicros += ns / 1000
			}
		}
	}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		s := string(b)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]); len(f) > 7 {
			faults, _ = strconv.ParseFloat(f[7], 64)
		}
	}
	return cpuMicros, faults
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
