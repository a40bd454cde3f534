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

// BenchmarkAgentFirstExec is the end of a cold create as the host sees it,
// on a fresh agent started as a runtime starts it (socket pair,
// agent.StartEnv, Client.WaitStarting): from the first answered Ping to
// the first output byte of the first exec (`echo hi`). Pauses stand for
// the host's own steps between them (its record and store writes: about
// 1 ms before the Init and 2.5 ms between the Init and the exec, as traced
// in sbx serve). It reports the wall time of the Init ("init-µs"), of the
// exec until its first byte ("exec-µs") and of all of it
// ("ready-to-output-µs"), and what the agent spent: its CPU time (µs,
// summed over its threads) and page faults in all ("cpu-µs", "faults"),
// during the Init ("init-") and during the exec ("exec-"). Medians.
// SBX_AGENT_BIN benchmarks another build of the agent.
func BenchmarkAgentFirstExec(b *testing.B) {
	bin := benchAgentBinary(b)
	dir, err := os.MkdirTemp("", "fe")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var rs []firstExecResult
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rs = append(rs, firstExecOnce(b, bin, filepath.Join(dir, strconv.Itoa(i))))
	}
	b.StopTimer()
	for _, m := range []struct {
		unit string
		get  func(firstExecResult) float64
	}{
		{"init-µs", func(r firstExecResult) float64 { return r.init.wall }},
		{"exec-µs", func(r firstExecResult) float64 { return r.exec.wall }},
		{"ready-to-output-µs", func(r firstExecResult) float64 { return r.total.wall }},
		{"cpu-µs", func(r firstExecResult) float64 { return r.total.cpu }},
		{"faults", func(r firstExecResult) float64 { return r.total.faults }},
		{"init-cpu-µs", func(r firstExecResult) float64 { return r.init.cpu }},
		{"init-faults", func(r firstExecResult) float64 { return r.init.faults }},
		{"exec-cpu-µs", func(r firstExecResult) float64 { return r.exec.cpu }},
		{"exec-faults", func(r firstExecResult) float64 { return r.exec.faults }},
	} {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = m.get(r)
		}
		b.ReportMetric(median(xs), m.unit)
	}
}

// stepCost is what one step took: wall time (µs), and the agent's CPU time
// (µs) and page faults.
type stepCost struct{ wall, cpu, faults float64 }

type firstExecResult struct{ init, exec, total stepCost }

// meter measures steps of the agent pid.
type meter struct {
	pid        int
	t          time.Time
	cpu, fault float64
}

func startMeter(pid int) meter {
	cpu, faults := procCost(pid)
	return meter{pid: pid, t: time.Now(), cpu: cpu, fault: faults}
}

func (m meter) cost() stepCost {
	wall := float64(time.Since(m.t).Microseconds())
	cpu, faults := procCost(m.pid)
	return stepCost{wall: wall, cpu: cpu - m.cpu, faults: faults - m.fault}
}

func firstExecOnce(b *testing.B, bin, stateDir string) firstExecResult {
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
	pid := cmd.Process.Pid
	var r firstExecResult
	all := startMeter(pid)
	time.Sleep(time.Millisecond)
	m := startMeter(pid)
	err = c.Init(ctx, agent.InitSpec{Image: sandbox.ImageConfig{
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	}})
	if err != nil {
		b.Fatal(err)
	}
	r.init = m.cost()
	time.Sleep(2500 * time.Microsecond)
	m = startMeter(pid)
	p, err := c.Exec(ctx, sandbox.ExecSpec{Command: []string{"echo", "hi"}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	for {
		ev, err := p.Recv()
		if err != nil {
			b.Fatal(err)
		}
		if ev.Kind == sandbox.EventOutput && len(ev.Data) > 0 {
			break
		}
	}
	r.exec, r.total = m.cost(), all.cost()
	return r
}
