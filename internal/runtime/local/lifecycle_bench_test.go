package local

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// BenchmarkLifeCycle: a sandbox's whole life, one at a time: Create (image
// cached), Start (an idle Init), the first output byte of `echo hi`, Stop
// with a grace period, Delete. Besides the wall time of each step it
// reports the CPU that the life cost: cpu-ms/op of this process and every
// process it reaped (the OCI runtime, the agent and what the agent ran),
// and machine-cpu-ms/op of the whole machine from /proc/stat, which also
// holds kernel work done off those processes (namespace teardown in
// kworkers) and, on a shared machine, everyone else's work. The CPU of
// create + delete bounds how many sandboxes per second two cores can cycle.
func BenchmarkLifeCycle(b *testing.B) {
	b.Run("crun", func(b *testing.B) { benchLifeCycle(b, newRuntime(b, "crun")) })
	// The writable layer a btrfs subvolume with a qgroup limit (disk.go).
	b.Run("crun-disk", func(b *testing.B) { benchLifeCycle(b, newRuntime(b, "crun", withDisk(newDiskPool(b), 1<<30))) })
	b.Run("crun-net", func(b *testing.B) {
		w := newNetWorld(b)
		benchLifeCycle(b, newRuntime(b, "crun", withNetwork(w.mgr)))
	})
}

func benchLifeCycle(b *testing.B, rt *Runtime) {
	ref, _ := env(b)
	ctx := context.Background()
	var create, first, stop, del, total []time.Duration
	cpu0, mach0 := processTreeCPU(), machineCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := runtimetest.NewID("life")
		t0 := time.Now()
		if _, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: ref}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := rt.Start(ctx, id, sandbox.StartSpec{}); err != nil {
			b.Fatal(err)
		}
		ag, p := firstOutput(b, ctx, rt, id)
		t2 := time.Now()
		p.Close()
		ag.Close()
		if err := rt.Stop(ctx, id, 10*time.Second); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		if err := rt.Delete(ctx, id); err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		create = append(create, t1.Sub(t0))
		first = append(first, t2.Sub(t0))
		stop = append(stop, t3.Sub(t2))
		del = append(del, t4.Sub(t3))
		total = append(total, t4.Sub(t0))
	}
	b.StopTimer()
	cpu, mach := processTreeCPU()-cpu0, machineCPU()-mach0
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(mach.Microseconds())/1000/float64(b.N), "machine-cpu-ms/op")
	for _, s := range []struct {
		name    string
		samples []time.Duration
	}{{"create", create}, {"first-output", first}, {"stop", stop}, {"delete", del}, {"life", total}} {
		b.ReportMetric(median(s.samples), s.name+"-p50-ms")
	}
}

// median returns the median of samples in milliseconds.
func median(samples []time.Duration) float64 {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return float64(s[len(s)/2].Microseconds()) / 1000
}

// processTreeCPU is the user + system CPU of this process and of every
// child it has reaped (whose own reaped children are included).
func processTreeCPU() time.Duration {
	var self, children unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &self)
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &children)
	d := func(tv unix.Timeval) time.Duration { return time.Duration(tv.Nano()) }
	return d(self.Utime) + d(self.Stime) + d(children.Utime) + d(children.Stime)
}

// machineCPU is the busy CPU time of the whole machine (every state of the
// "cpu" line of /proc/stat but idle and iowait), in USER_HZ ticks of 10 ms.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	fields := bytes.Fields(line)
	var ticks uint64
	for i, f := range fields[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 7 { // guest and guest_nice are already in user and nice
			break
		}
		n, _ := strconv.ParseUint(string(f), 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
