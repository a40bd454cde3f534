package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// TestReadStatsFixtures reads cgroup files as the kernel writes them
// (testdata/stats): v1 controllers, v2, and a v2 kernel before
// memory.peak (5.19).
func TestReadStatsFixtures(t *testing.T) {
	dir := filepath.Join("testdata", "stats")
	v1, err := readStatsV1(filepath.Join(dir, "v1", "cpuacct"), filepath.Join(dir, "v1", "memory"), filepath.Join(dir, "v1", "pids"))
	if err != nil {
		t.Fatal(err)
	}
	want := sandbox.Stats{CPU: 2500 * time.Millisecond, MemoryBytes: 50 << 20, MemoryPeakBytes: 60 << 20,
		MemoryLimitBytes: 256 << 20, OOMKills: 2, Pids: 5, PidsLimit: 256}
	if v1 != want {
		t.Errorf("v1: %+v, want %+v", v1, want)
	}
	v2, err := readStatsV2(filepath.Join(dir, "v2"))
	if err != nil {
		t.Fatal(err)
	}
	want = sandbox.Stats{CPU: 1500 * time.Millisecond, MemoryBytes: 40 << 20, MemoryPeakBytes: 48 << 20,
		MemoryLimitBytes: 256 << 20, OOMKills: 1, Pids: 3, PidsLimit: 0}
	if v2 != want {
		t.Errorf("v2: %+v, want %+v", v2, want)
	}
	old, err := readStatsV2(filepath.Join(dir, "v2-5.15"))
	if err != nil {
		t.Fatal(err)
	}
	want = sandbox.Stats{CPU: 1500 * time.Millisecond, MemoryBytes: 40 << 20, MemoryLimitBytes: 256 << 20, Pids: 3, PidsLimit: 4096}
	if old != want {
		t.Errorf("v2 before memory.peak: %+v, want %+v", old, want)
	}
	// A controller that is not mounted leaves its fields 0.
	if st, err := readStatsV1("", filepath.Join(dir, "v1", "memory"), ""); err != nil || st.CPU != 0 || st.Pids != 0 || st.MemoryBytes != 50<<20 {
		t.Errorf("v1 without cpuacct and pids: %+v, %v", st, err)
	}
	// A cgroup that is gone (the sandbox ended) is an error, not zeros.
	if _, err := readStatsV2(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing cgroup: %v, want ErrNotExist", err)
	}
}

func TestParseCgroupValue(t *testing.T) {
	for in, want := range map[string]int64{
		"0\n": 0, "4096\n": 4096, "max\n": 0, "9223372036854771712\n": 0, " 17 ": 17,
	} {
		if got, err := parseCgroupValue([]byte(in)); err != nil || got != want {
			t.Errorf("parseCgroupValue(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "12k", "1 2"} {
		if _, err := parseCgroupValue([]byte(in)); err == nil {
			t.Errorf("parseCgroupValue(%q) succeeded", in)
		}
	}
	if n, ok := parseKeyed([]byte("oom 3\noom_kill 2\n"), "oom_kill"); !ok || n != 2 {
		t.Errorf("parseKeyed: %d, %v", n, ok)
	}
	if _, ok := parseKeyed([]byte("oom_kill_disable 0\n"), "oom_kill"); ok {
		t.Errorf("parseKeyed matched a key's prefix")
	}
}

// TestStats runs work of each kind in a real sandbox under crun, with a
// disk pool, and checks that Stats sees it. No timing is asserted: only
// that each count reflects what the sandbox did.
func TestStats(t *testing.T) {
	pool := newDiskPool(t)
	rt := newRuntime(t, "crun", withDisk(pool, 128<<20))
	id, ag := runtimetest.Create(t, harness(t, rt, sandbox.Resources{MemoryBytes: 96 << 20, Pids: 64}), "stats")
	ctx := context.Background()
	read := func() sandbox.Stats {
		t.Helper()
		st, err := rt.Stats(ctx, id)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		return st
	}
	st := read()
	if st.MemoryLimitBytes != 96<<20 || st.PidsLimit != 64 || st.DiskLimitBytes != 128<<20 || st.Pids < 1 || st.MemoryBytes <= 0 || st.ReadAt.IsZero() {
		t.Fatalf("fresh sandbox: %+v", st)
	}

	// Memory: 40 MiB in a tmpfs is charged to the sandbox until removed.
	if r := sh(t, ag, "dd if=/dev/zero of=/dev/shm/x bs=1M count=40 2>&1"); r.Exit.Code != 0 {
		t.Fatalf("dd: %+v", r)
	}
	if st = read(); st.MemoryBytes < 40<<20 || st.MemoryPeakBytes < 40<<20 {
		t.Errorf("after 40 MiB in /dev/shm: memory %d, peak %d", st.MemoryBytes, st.MemoryPeakBytes)
	}
	sh(t, ag, "rm /dev/shm/x")

	// CPU: a busy loop adds CPU time.
	before := read().CPU
	sh(t, ag, "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done")
	if after := read().CPU; after <= before {
		t.Errorf("CPU after a busy loop: %v, before %v", after, before)
	}

	// Pids: three sleeping processes (setsid, so they outlive the exec).
	n := read().Pids
	sh(t, ag, "for i in 1 2 3; do setsid sleep 600 </dev/null >/dev/null 2>&1 & done")
	if st = read(); st.Pids < n+3 {
		t.Errorf("after starting 3 sleeps: %d pids, before %d", st.Pids, n)
	}
	sh(t, ag, "pkill sleep")

	// Disk: a 20 MiB file, once committed (sync), is what the qgroup
	// references.
	if r := sh(t, ag, "dd if=/dev/urandom of=/big bs=1M count=20 2>&1 && sync"); r.Exit.Code != 0 {
		t.Fatalf("dd: %+v", r)
	}
	if st = read(); st.DiskBytes < 20<<20 {
		t.Errorf("after writing 20 MiB and sync: disk %d", st.DiskBytes)
	}

	// OOM: a process past the memory limit is killed and counted.
	if st.OOMKills != 0 {
		t.Fatalf("OOM kills before any: %d", st.OOMKills)
	}
	if r := sh(t, ag, `awk 'BEGIN { s = "xxxxxxxxxxxxxxxx"; while (1) s = s s }'`); r.Exit.Signal != "SIGKILL" {
		t.Fatalf("memory hog ended %+v, want SIGKILL by the OOM killer", r.Exit)
	}
	if st = read(); st.OOMKills < 1 || st.MemoryPeakBytes < 64<<20 {
		t.Errorf("after an OOM kill: %d kills, peak %d", st.OOMKills, st.MemoryPeakBytes)
	}

	// Not running: FailedPrecondition; unknown: NotFound.
	if err := rt.Stop(ctx, id, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Stats(ctx, id); !errors.Is(err, sandbox.ErrFailedPrecondition) || sandbox.ReasonOf(err) != sandbox.ReasonSandboxNotRunning {
		t.Errorf("Stats of a stopped sandbox: %v", err)
	}
	if _, err := rt.Stats(ctx, "no-such-"+randSuffix()); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Stats of an unknown sandbox: %v", err)
	}
}

// TestStatsRunsc checks that Stats reads a gVisor sandbox's cgroup (which
// holds its Sentry and gofer) too.
func TestStatsRunsc(t *testing.T) {
	rt := newRuntime(t, "runsc")
	id, _ := runtimetest.Create(t, harness(t, rt, sandbox.Resources{}), "stats")
	st, err := rt.Stats(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryBytes <= 0 || st.Pids < 1 || st.CPU <= 0 || st.MemoryLimitBytes != 256<<20 || st.DiskBytes != 0 || st.DiskLimitBytes != 0 {
		t.Errorf("runsc sandbox: %+v", st)
	}
}

// BenchmarkStats measures one reading of a crun sandbox with a disk pool:
// cgroup files and the qgroup's sysfs file, no agent call.
func BenchmarkStats(b *testing.B) {
	pool := newDiskPool(b)
	rt := newRuntime(b, "crun", withDisk(pool, 64<<20))
	ref, _ := env(b)
	ctx := context.Background()
	id := "statsbench-" + randSuffix()
	if _, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: ref}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rt.Delete(context.Background(), id) })
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rt.Stats(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}
