package agent_test

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// BenchmarkExecTrue is the exec round trip of `true` through the client:
// start, stream, exit event. It also reports the median.
func BenchmarkExecTrue(b *testing.B) {
	a := startAgent(b)
	ctx := ctxT(b)
	spec := sandbox.ExecSpec{Command: []string{"/bin/true"}}
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		p, err := a.c.Exec(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		for {
			ev, err := p.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if ev.Kind == sandbox.EventExit && ev.Exit.Code != 0 {
				b.Fatalf("exit %+v", ev.Exit)
			}
		}
		p.Close()
		times = append(times, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds()), "p50-µs")
}

func BenchmarkWriteRead1MiB(b *testing.B)   { benchWriteRead(b, 1<<20) }
func BenchmarkWriteRead100MiB(b *testing.B) { benchWriteRead(b, 100<<20) }

// benchWriteRead writes size bytes and reads them back, per op.
func benchWriteRead(b *testing.B, size int64) {
	a := startAgent(b)
	ctx := ctxT(b)
	path := filepath.Join(tempDir(b), "f")
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := a.c.WriteFile(ctx, path, 0, patternReader(uint64(i), size)); err != nil {
			b.Fatal(err)
		}
		r, err := a.c.ReadFile(ctx, path)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, r)
		r.Close()
		if err != nil || n != size {
			b.Fatalf("read %d: %v", n, err)
		}
	}
}

// BenchmarkAgentRSS reports the agent's resident memory (VmRSS, and its
// anonymous part: the rest is the binary's pages, shared by every sandbox)
// when idle after start, and again idle after 200 execs and a 100 MiB
// write+read.
func BenchmarkAgentRSS(b *testing.B) {
	for i := 0; i < b.N; i++ {
		a := startAgent(b)
		ctx := ctxT(b)
		pid := a.cmd.Process.Pid
		time.Sleep(500 * time.Millisecond)
		b.ReportMetric(float64(vmRSS(b, pid)), "idle-RSS-KiB")
		b.ReportMetric(float64(procStatus(b, pid, "RssAnon:")), "idle-anon-KiB")
		for j := 0; j < 200; j++ {
			run(b, a.c, sandbox.ExecSpec{Command: []string{"/bin/true"}})
		}
		benchFile := filepath.Join(tempDir(b), "f")
		if err := a.c.WriteFile(ctx, benchFile, 0, patternReader(9, 100<<20)); err != nil {
			b.Fatal(err)
		}
		r, err := a.c.ReadFile(ctx, benchFile)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, r)
		r.Close()
		b.ReportMetric(float64(vmRSS(b, pid)), "after-load-RSS-KiB")
		time.Sleep(3 * time.Second) // let the Go scavenger return memory
		b.ReportMetric(float64(vmRSS(b, pid)), "idle-after-load-RSS-KiB")
		b.ReportMetric(float64(procStatus(b, pid, "RssAnon:")), "idle-after-load-anon-KiB")
	}
}

func vmRSS(b *testing.B, pid int) int { return procStatus(b, pid, "VmRSS:") }

// procStatus returns a kB field of /proc/<pid>/status.
func procStatus(b *testing.B, pid int, field string) int {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	b.Fatal("no " + field)
	return 0
}
