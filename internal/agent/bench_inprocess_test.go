package agent

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// The in-process benchmarks run the agent's server inside the benchmark
// binary, so that one -cpuprofile covers both the client and the agent.
// Run them on their own (-bench InProcess): the server reaps with wait4(-1),
// which races with os/exec in the other benchmarks.

func startInProcess(b *testing.B) (*Client, string) {
	b.Helper()
	dir, err := os.MkdirTemp("", "a")
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{StateDir: filepath.Join(dir, "s")})
	if err != nil {
		b.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	c := Dial(filepath.Join(dir, "s", SocketName))
	b.Cleanup(func() {
		c.Close()
		stop()
		<-done
		os.RemoveAll(dir)
	})
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := c.WaitReady(wctx); err != nil {
		b.Fatal(err)
	}
	return c, dir
}

// cpuMeter reports the CPU time (user + system) of this process, client and
// agent together, per op: unlike wall time it hardly depends on what else
// the machine runs, so it shows an improvement on a busy machine too.
type cpuMeter struct{ self, children time.Duration }

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuMeter {
	return cpuMeter{rusage(syscall.RUSAGE_SELF), rusage(syscall.RUSAGE_CHILDREN)}
}

func (m cpuMeter) report(b *testing.B) {
	n := float64(b.N)
	b.ReportMetric(float64((rusage(syscall.RUSAGE_SELF)-m.self).Microseconds())/n, "cpu-µs/op")
	if c := rusage(syscall.RUSAGE_CHILDREN) - m.children; c > 0 {
		b.ReportMetric(float64(c.Microseconds())/n, "child-cpu-µs/op")
	}
}

// BenchmarkInProcessExecTrue is BenchmarkExecTrue with the agent in process.
func BenchmarkInProcessExecTrue(b *testing.B) {
	c, _ := startInProcess(b)
	ctx := context.Background()
	argv0 := "/bin/true"
	if _, err := os.Stat("/bin/busybox"); err == nil {
		argv0 = "/bin/busybox" // static, as in the test images: less exec cost
	}
	spec := sandbox.ExecSpec{Command: []string{argv0, "true"}}
	times := make([]time.Duration, 0, b.N)
	cpu := startCPU()
	for b.Loop() {
		start := time.Now()
		p, err := c.Exec(ctx, spec)
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
	cpu.report(b)
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds()), "p50-µs")
}

func BenchmarkInProcessWrite100MiB(b *testing.B) { benchInProcessFile(b, 100<<20, true, false) }
func BenchmarkInProcessRead100MiB(b *testing.B)  { benchInProcessFile(b, 100<<20, false, true) }

// benchInProcessFile writes (and/or reads back) size bytes per op.
func benchInProcessFile(b *testing.B, size int64, write, read bool) {
	c, dir := startInProcess(b)
	ctx := context.Background()
	path := filepath.Join(dir, "f")
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(i * 7)
	}
	src := func() io.Reader { return io.LimitReader(repeatReader(block), size) }
	if !write {
		if err := c.WriteFile(ctx, path, 0, src()); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(size)
	cpu := startCPU()
	for b.Loop() {
		if write {
			if err := c.WriteFile(ctx, path, 0, src()); err != nil {
				b.Fatal(err)
			}
		}
		if read {
			r, err := c.ReadFile(ctx, path)
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
	cpu.report(b)
}

// repeatReader yields block over and over.
type repeatReader []byte

func (r repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], r)
	}
	return n, nil
}
