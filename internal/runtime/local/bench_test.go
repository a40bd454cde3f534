package local

import (
	"bytes"
	"context"
	"io"
	"sort"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// reportPercentiles adds p50 and p99 of samples to the benchmark's output.
func reportPercentiles(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(samples[len(samples)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkCreateToFirstOutput: Create (image cached) until the first byte
// of an exec's output arrives; Delete is outside the timing.
func BenchmarkCreateToFirstOutput(b *testing.B) {
	for _, name := range []string{"crun", "runc"} {
		b.Run(name, func(b *testing.B) {
			benchCreateToFirstOutput(b, newRuntime(b, name))
		})
	}
}

// benchCreateToFirstOutput times rt's Create until the first output byte of
// `echo hi` in the new sandbox, b.N times, and reports the percentiles.
func benchCreateToFirstOutput(b *testing.B, rt *Runtime) {
	ref, _ := env(b)
	ctx := context.Background()
	var samples []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := runtimetest.NewID("bench")
		start := time.Now()
		if _, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: ref}); err != nil {
			b.Fatal(err)
		}
		ag, p := firstOutput(b, ctx, rt, id)
		samples = append(samples, time.Since(start))
		b.StopTimer()
		p.Close()
		ag.Close()
		if err := rt.Delete(ctx, id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	reportPercentiles(b, samples)
}

// firstOutput runs `echo hi` in sandbox id and returns once its first
// output arrives, with the agent and process for the caller to close.
func firstOutput(b *testing.B, ctx context.Context, rt *Runtime, id string) (sandbox.Agent, sandbox.Process) {
	b.Helper()
	ag, err := rt.Agent(ctx, id)
	if err != nil {
		b.Fatal(err)
	}
	p, err := ag.Exec(ctx, sandbox.ExecSpec{Command: []string{"echo", "hi"}})
	if err != nil {
		b.Fatal(err)
	}
	for {
		ev, err := p.Recv()
		if err != nil {
			b.Fatal(err)
		}
		if ev.Kind == sandbox.EventOutput {
			return ag, p
		}
	}
}

// BenchmarkStop: Stop of an idle sandbox with a grace period.
func BenchmarkStop(b *testing.B) {
	rt := newRuntime(b, "crun")
	ref, _ := env(b)
	ctx := context.Background()
	var samples []time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		id := runtimetest.NewID("stop")
		if _, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: ref}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := rt.Stop(ctx, id, 10*time.Second); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
		b.StopTimer()
		if err := rt.Delete(ctx, id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	reportPercentiles(b, samples)
}

func benchSandbox(b *testing.B) sandbox.Agent {
	rt := newRuntime(b, "crun")
	ref, _ := env(b)
	ctx := context.Background()
	id := runtimetest.NewID("bench")
	if _, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: ref}); err != nil {
		b.Fatal(err)
	}
	ag, err := rt.Agent(ctx, id)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ag.Close() })
	return ag
}

// BenchmarkExecTrue: one exec round trip of `true` through the agent.
func BenchmarkExecTrue(b *testing.B) {
	ag := benchSandbox(b)
	ctx := context.Background()
	var samples []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		r, err := runtimetest.Exec(ctx, ag, sandbox.ExecSpec{Command: []string{"true"}})
		if err != nil || r.Exit.Code != 0 {
			b.Fatal(r, err)
		}
		samples = append(samples, time.Since(start))
	}
	reportPercentiles(b, samples)
}

// BenchmarkFileWriteRead: write then read back a file of each size.
func BenchmarkFileWriteRead(b *testing.B) {
	ag := benchSandbox(b)
	ctx := context.Background()
	for _, size := range []int{1 << 20, 100 << 20} {
		data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
		name := "1MiB"
		if size > 1<<20 {
			name = "100MiB"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(2 * size))
			var samples []time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if err := ag.WriteFile(ctx, "/tmp/bench.bin", 0o600, bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
				rc, err := ag.ReadFile(ctx, "/tmp/bench.bin")
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, rc)
				rc.Close()
				if err != nil || n != int64(size) {
					b.Fatal(n, err)
				}
				samples = append(samples, time.Since(start))
			}
			reportPercentiles(b, samples)
		})
	}
}
