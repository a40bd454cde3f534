// Command sbx-transport compares the two ways a local SDK reaches `sbx
// serve`, loopback TCP and the API's Unix socket, on exec round trips of
// `true` and on file round trips (WriteFileFrom, then ReadFileTo), against
// one server it starts, in interleaved rounds (tcp unix, unix tcp, ...).
// Besides wall-clock times it reports the CPU each process spent per
// operation (user + system from /proc/<pid>/stat: this process, the
// server, and the sandbox's processes, agent and its reaped children),
// which other work on a shared machine disturbs much less.
//
//	go run ./bench/cmd/sbx-transport --rounds 3 --execs 300 --file-mib 1024
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/bench"
)

func main() {
	serverBin := flag.String("server-bin", "", "directory holding prebuilt sbx and sbx-agent (default: build them)")
	execs := flag.Int("execs", 300, "exec round trips per transport and round")
	rounds := flag.Int("rounds", 3, "rounds; each measures both transports, in alternating order")
	fileMiB := flag.Int("file-mib", 1024, "file size of the round trips, in MiB (0 skips them)")
	serveArgs := flag.String("serve-args", "", "more flags for the started `sbx serve`, space-separated")
	transports := flag.String("transports", "tcp,unix", "transports to measure, in the first round's order (tcp for a server without the socket)")
	flag.Parse()
	trs := strings.Split(*transports, ",")
	for _, t := range trs {
		if t != "tcp" && t != "unix" {
			fail(fmt.Errorf("--transports: %q is neither tcp nor unix", t))
		}
	}
	if *execs < 1 || *execs > 100_000 || *rounds < 1 || *rounds > 100 || *fileMiB < 0 || *fileMiB > 8192 {
		fail(fmt.Errorf("--execs 1..100000, --rounds 1..100, --file-mib 0..8192"))
	}
	if err := run(context.Background(), *serverBin, strings.Fields(*serveArgs), trs, *execs, *rounds, int64(*fileMiB)<<20); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sbx-transport:", err)
	os.Exit(1)
}

// sample is one transport's figures in one round.
type sample struct {
	execP50, execMean time.Duration
	execCPU           [3]time.Duration // per exec: sdk, server, sandbox
	write, read       time.Duration
	writeCPU, readCPU [3]time.Duration // per file: sdk, server, sandbox
}

func run(ctx context.Context, binDir string, serveArgs, trs []string, execs, rounds int, size int64) error {
	work, err := os.MkdirTemp("/tmp", "sbxt-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	sbxBin, agentBin := filepath.Join(binDir, "sbx"), filepath.Join(binDir, "sbx-agent")
	if binDir == "" {
		if sbxBin, agentBin, err = bench.BuildBinaries(work); err != nil {
			return err
		}
	}
	srv, err := bench.StartServer(ctx, filepath.Join(work, "s"), sbxBin, agentBin, "crun", 10, "", serveArgs...)
	if err != nil {
		return err
	}
	defer srv.Stop()
	clients := map[string]*sbx.Client{}
	for _, tr := range trs {
		if clients[tr], err = sbx.NewClient(sbx.WithURL(srv.ClientURL(tr)), sbx.WithAPIKey(srv.Key)); err != nil {
			return err
		}
	}
	// Sized for a 1 GiB file, as the harness's files scenario.
	sb, err := clients[trs[0]].Run(ctx, sbx.Image("busybox"), sbx.Resources{CPUMillis: 2000, MemoryBytes: 4 << 30})
	if err == nil {
		err = sb.Wait(ctx)
	}
	if err != nil {
		return err
	}
	defer sb.Delete(context.WithoutCancel(ctx))
	cpus := func() [3]time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		self := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		return [3]time.Duration{self, bench.ProcTreeCPU(srv.ServingPIDs()), bench.ProcTreeCPU(cgroupPIDs(sb.ID()))}
	}
	fmt.Printf("load before: %s\n", bench.LoadAvg())
	fmt.Printf("%-5s %-5s %9s %9s %24s %8s %8s %8s %24s %24s\n", "round", "tr", "exec p50", "mean", "CPU/exec sdk/srv/sbx µs", "write s", "read s", "GB/s", "CPU/write sdk/srv/sbx s", "CPU/read sdk/srv/sbx s")
	res := map[string][]sample{}
	for r := 0; r < rounds; r++ {
		order := slices.Clone(trs)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, tr := range order {
			s, err := measure(ctx, clients[tr], sb.ID(), execs, size, cpus)
			if err != nil {
				return fmt.Errorf("%s: %w", tr, err)
			}
			res[tr] = append(res[tr], s)
			fmt.Printf("%-5d %-5s %8.3fms %8.3fms %24s", r, tr, ms(s.execP50), ms(s.execMean), triple(s.execCPU, time.Microsecond))
			if size > 0 {
				fmt.Printf(" %8.3f %8.3f %8.3f %24s %24s", s.write.Seconds(), s.read.Seconds(), gbps(size, s.write+s.read),
					triple(s.writeCPU, time.Second), triple(s.readCPU, time.Second))
			}
			fmt.Println()
		}
	}
	fmt.Printf("load after: %s\n\n", bench.LoadAvg())
	for _, tr := range trs {
		ss := res[tr]
		p50s := collect(ss, func(s sample) float64 { return ms(s.execP50) })
		cpuExec := collect(ss, func(s sample) float64 { return float64(sum(s.execCPU)) / 1e3 })
		rt := collect(ss, func(s sample) float64 { return gbps(size, s.write+s.read) })
		cpuFile := collect(ss, func(s sample) float64 { return (sum(s.writeCPU) + sum(s.readCPU)).Seconds() })
		fmt.Printf("%-4s exec p50 best %.3f ms, median %.3f ms; CPU per exec (all processes) best %.0f µs, median %.0f µs\n", tr, minOf(p50s), median(p50s), minOf(cpuExec), median(cpuExec))
		if size > 0 {
			fmt.Printf("%-4s %d MiB round trip best %.3f GB/s, median %.3f GB/s; CPU per round trip best %.2f s, median %.2f s\n", tr, size>>20, maxOf(rt), median(rt), minOf(cpuFile), median(cpuFile))
		}
	}
	return nil
}

// measure runs the exec round trips, then one file round trip, over c.
func measure(ctx context.Context, c *sbx.Client, id string, execs int, size int64, cpus func() [3]time.Duration) (sample, error) {
	var s sample
	sb, err := c.Get(ctx, id)
	if err != nil {
		return s, err
	}
	once := func() error {
		p, err := sb.Exec(ctx, []string{"true"})
		if err != nil {
			return err
		}
		_, err = p.Wait()
		return err
	}
	for i := 0; i < 20; i++ { // warm-up: connections, the agent's threads
		if err := once(); err != nil {
			return s, err
		}
	}
	lat := make([]time.Duration, 0, execs)
	c0 := cpus()
	for i := 0; i < execs; i++ {
		start := time.Now()
		if err := once(); err != nil {
			return s, err
		}
		lat = append(lat, time.Since(start))
	}
	s.execCPU = per(c0, cpus(), execs)
	slices.Sort(lat)
	s.execP50 = lat[len(lat)/2]
	var total time.Duration
	for _, l := range lat {
		total += l
	}
	s.execMean = total / time.Duration(len(lat))
	if size == 0 {
		return s, nil
	}
	// The previous file goes first, untimed, as in the harness.
	sb.Remove(ctx, "/tmp/t.bin", false)
	c0 = cpus()
	start := time.Now()
	if _, err := sb.WriteFileFrom(ctx, "/tmp/t.bin", bench.NewPattern(size), 0o644); err != nil {
		return s, err
	}
	s.write = time.Since(start)
	c1 := cpus()
	start = time.Now()
	n, err := sb.ReadFileTo(ctx, "/tmp/t.bin", io.Discard)
	if err == nil && n != size {
		err = fmt.Errorf("read %d bytes of %d", n, size)
	}
	if err != nil {
		return s, err
	}
	s.read = time.Since(start)
	s.writeCPU, s.readCPU = per(c0, c1, 1), per(c1, cpus(), 1)
	return s, nil
}

func per(a, b [3]time.Duration, n int) (out [3]time.Duration) {
	for i := range out {
		out[i] = (b[i] - a[i]) / time.Duration(n)
	}
	return out
}

// cgroupPIDs are the processes whose cgroup path names the sandbox.
func cgroupPIDs(id string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cgroup"); err == nil && strings.Contains(string(b), id) {
			out = append(out, pid)
		}
	}
	return out
}

func ms(d time.Duration) float64               { return float64(d) / 1e6 }
func gbps(size int64, d time.Duration) float64 { return float64(size) / d.Seconds() / 1e9 }

func sum(t [3]time.Duration) time.Duration { return t[0] + t[1] + t[2] }

func triple(t [3]time.Duration, unit time.Duration) string {
	f := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/float64(unit), 'f', 2, 64) }
	if unit == time.Microsecond {
		f = func(d time.Duration) string { return strconv.FormatInt(int64(d/unit), 10) }
	}
	return f(t[0]) + "/" + f(t[1]) + "/" + f(t[2])
}

func collect(ss []sample, f func(sample) float64) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	slices.Sort(out)
	return out
}

func minOf(v []float64) float64 { return v[0] }
func maxOf(v []float64) float64 { return v[len(v)-1] }
func median(v []float64) float64 {
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
