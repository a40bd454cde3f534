package e2e

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
)

// sizedPattern is size bytes of a repeated block with a Len method, so
// that the SDK knows the size up front, as the harness's file scenario.
type sizedPattern struct {
	block []byte
	left  int64
	off   int
}

func (p *sizedPattern) Len() int { return int(p.left) }

func (p *sizedPattern) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	n := copy(b, p.block[p.off:])
	n = int(min(int64(n), p.left))
	p.off = (p.off + n) % len(p.block)
	p.left -= int64(n)
	return n, nil
}

// cpuSeconds returns a process's user+system CPU time from a /proc stat
// line.
func cpuSeconds(stat string) float64 {
	// Fields after the ")" of comm: utime and stime are the 12th and 13th.
	f := strings.Fields(stat[strings.LastIndexByte(stat, ')')+1:])
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100 // USER_HZ
}

// BenchmarkFileRoundTrip1GiB writes and reads back 1 GiB through the real
// server and agent, after one warm-up round trip, and reports wall time
// and the CPU time of the client, the server and the agent per round trip
// (CPU time is what to compare on a busy machine):
//
//	go test ./test/e2e -run '^$' -bench FileRoundTrip1GiB -benchtime 3x
func BenchmarkFileRoundTrip1GiB(b *testing.B) {
	const size = 1 << 30
	s := startServer(b)
	c := s.client()
	ctx := ctxT(b, 10*time.Minute)
	// SBX_BENCH_MEMORY (bytes) and SBX_BENCH_CPU (millicores) set the
	// sandbox's limits: the agent's work and the page cache of the file it
	// writes are charged to them.
	var res sbx.Resources
	if v := os.Getenv("SBX_BENCH_MEMORY"); v != "" {
		res.MemoryBytes, _ = strconv.ParseInt(v, 10, 64)
	}
	if v := os.Getenv("SBX_BENCH_CPU"); v != "" {
		res.CPUMillis, _ = strconv.ParseInt(v, 10, 64)
	}
	sb, err := c.Run(ctx, sbx.Image("busybox"), res)
	if err != nil {
		b.Fatal(err)
	}
	defer sb.Delete(ctx)
	block := make([]byte, 1<<20)
	for i := range block {
		block[i] = byte(i * 7 / 3)
	}
	agentCPU := func() float64 {
		p, err := sb.Exec(ctx, []string{"cat", "/proc/1/stat"})
		if err != nil {
			b.Fatal(err)
		}
		res, err := p.Result()
		if err != nil {
			b.Fatal(err)
		}
		return cpuSeconds(string(res.Stdout))
	}
	serverCPU := func() float64 {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.servingPID()))
		if err != nil {
			b.Fatal(err)
		}
		return cpuSeconds(string(st))
	}
	selfCPU := func() float64 {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	roundTrip := func() (time.Duration, time.Duration) {
		start := time.Now()
		if _, err := sb.WriteFileFrom(ctx, "/tmp/bench.bin", &sizedPattern{block: block, left: size}, 0o644); err != nil {
			b.Fatal(err)
		}
		w := time.Since(start)
		start = time.Now()
		n, err := sb.ReadFileTo(ctx, "/tmp/bench.bin", io.Discard)
		if err != nil || n != size {
			b.Fatalf("read %d: %v", n, err)
		}
		return w, time.Since(start)
	}
	w, r := roundTrip()
	b.Logf("first run: write %.3f GB/s, read %.3f GB/s, round trip %.3f GB/s", size/w.Seconds()/1e9, size/r.Seconds()/1e9, size/(w+r).Seconds()/1e9)
	a0, s0, c0 := agentCPU(), serverCPU(), selfCPU()
	var wsum, rsum time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w, r := roundTrip()
		wsum, rsum = wsum+w, rsum+r
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(size*n/wsum.Seconds()/1e9, "write-GB/s")
	b.ReportMetric(size*n/rsum.Seconds()/1e9, "read-GB/s")
	b.ReportMetric(size*n/(wsum+rsum).Seconds()/1e9, "roundtrip-GB/s")
	b.ReportMetric((agentCPU()-a0)/n, "agent-cpu-s/op")
	b.ReportMetric((serverCPU()-s0)/n, "server-cpu-s/op")
	b.ReportMetric((selfCPU()-c0)/n, "client-cpu-s/op")
}
