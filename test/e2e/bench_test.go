package e2e

import (
	"bufio"
	"sort"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
)

// BenchmarkCreateToFirstOutput measures, through the API of a real server,
// the time from Run to the first byte of an exec's output in the new
// sandbox (busybox, cached after the first), and reports p50 and p99.
//
//	go test ./test/e2e -run '^$' -bench CreateToFirstOutput -benchtime 50x
func BenchmarkCreateToFirstOutput(b *testing.B) {
	s := startServer(b)
	c := s.client()
	ctx := ctxT(b, 10*time.Minute)
	warm, err := c.Run(ctx, sbx.Image("busybox")) // pull once
	if err != nil {
		b.Fatal(err)
	}
	if err := warm.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	warm.Delete(ctx)
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
		if err := sb.Delete(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	reportPercentiles(b, lat)
}

// BenchmarkExecTrue measures the round trip of `true` through the API (exec
// started, exit received) in one running sandbox, and reports p50 and p99.
//
//	go test ./test/e2e -run '^$' -bench ExecTrue -benchtime 500x
func BenchmarkExecTrue(b *testing.B) {
	s := startServer(b)
	c := s.client()
	ctx := ctxT(b, 10*time.Minute)
	sb, err := c.Run(ctx, sbx.Image("busybox"))
	if err != nil {
		b.Fatal(err)
	}
	if err := sb.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		p, err := sb.Exec(ctx, []string{"true"})
		if err != nil {
			b.Fatal(err)
		}
		if code, err := p.Wait(); err != nil || code != 0 {
			b.Fatalf("true: %d, %v", code, err)
		}
		lat = append(lat, time.Since(start))
	}
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		i := int(p * float64(len(lat)-1))
		return float64(lat[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
