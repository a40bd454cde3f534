package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/testenv"
)

// newDiskPool makes an image-backed pool of 1 GiB in a fresh data dir and
// unmounts it at cleanup (it lives in the test's private mount namespace).
func newDiskPool(t testing.TB) *DiskPool {
	t.Helper()
	requireBtrfs(t)
	dataDir, err := os.MkdirTemp("", "sbx-disk-")
	if err != nil {
		t.Fatal(err)
	}
	p, err := OpenDiskPool(DiskPoolConfig{DataDir: dataDir, Size: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Unmount(); err != nil {
			t.Error(err)
		}
		os.RemoveAll(dataDir)
	})
	return p
}

// requireBtrfs checks that disk pools can be made here: btrfs in the
// kernel and mkfs.btrfs (a failure in CI, a skip elsewhere).
func requireBtrfs(t testing.TB) {
	t.Helper()
	testenv.Require(t, true, "mkfs.btrfs")
	if !btrfsAvailable() {
		if testenv.InCI() {
			t.Fatal("this kernel has no btrfs")
		}
		t.Skip("this kernel has no btrfs")
	}
}

// fill writes to path until it fails or n bytes are written.
func fill(path string, n int) (int, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	buf := bytes.Repeat([]byte{'x'}, 1<<20)
	written := 0
	for written < n {
		m, err := f.Write(buf)
		written += m
		if err != nil {
			f.Close()
			return written, err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return written, err
	}
	return written, f.Close()
}

func isDiskFull(err error) bool {
	return errors.Is(err, unix.EDQUOT) || errors.Is(err, unix.ENOSPC)
}

// waitQgroupsGone waits until the pool has no qgroup but the top level's:
// the kernel drops a deleted subvolume's once its cleaner freed it.
func waitQgroupsGone(t testing.TB, p *DiskPool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		q, err := p.qgroups()
		if err != nil {
			t.Fatal(err)
		}
		if len(q) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("qgroups left behind: %v", q)
		}
		// Commit and wake the cleaner, so it frees them now.
		fd, err := unix.Open(p.Dir(), unix.O_RDONLY, 0)
		if err == nil {
			_ = btrfsSync(fd)
			unix.Close(fd)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestDiskPoolLimitAndRelease(t *testing.T) {
	p := newDiskPool(t)
	upper, _, err := p.create("a", 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	upperB, _, err := p.create("b", 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	n, err := fill(filepath.Join(upper, "big"), 64<<20)
	if !isDiskFull(err) {
		t.Fatalf("writing 64 MiB into a 32 MiB subvolume: wrote %d bytes, err %v; want EDQUOT", n, err)
	}
	if n > 32<<20 {
		t.Fatalf("wrote %d bytes past a 32 MiB limit", n)
	}
	// The neighbour is unaffected.
	if _, err := fill(filepath.Join(upperB, "f"), 16<<20); err != nil {
		t.Fatalf("neighbour subvolume: %v", err)
	}
	if err := os.Mkdir(filepath.Join(upper, "dir"), 0o755); err != nil && !isDiskFull(err) {
		t.Fatalf("mkdir in a full subvolume: %v", err)
	}
	for _, name := range []string{"a", "b"} {
		if err := p.destroy(name); err != nil {
			t.Fatal(err)
		}
	}
	if entries, _ := os.ReadDir(p.Dir()); len(entries) != 0 {
		t.Fatalf("left in the pool: %v", entries)
	}
	waitQgroupsGone(t, p)
	// destroy of a missing subvolume is fine.
	if err := p.destroy("a"); err != nil {
		t.Fatal(err)
	}
}

// TestDiskPoolOnBtrfsDataDir: a data dir on btrfs needs no image: its
// sandboxes' subvolumes are made in <data-dir>/disk directly.
func TestDiskPoolOnBtrfsDataDir(t *testing.T) {
	outer := newDiskPool(t)
	dataDir := filepath.Join(outer.Dir(), "data")
	p, err := OpenDiskPool(DiskPoolConfig{DataDir: dataDir, NoMount: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Image() != "" || p.Device() != "" || p.Dir() != filepath.Join(dataDir, "disk") {
		t.Fatalf("pool on a btrfs data dir: dir %s, image %q, device %q", p.Dir(), p.Image(), p.Device())
	}
	upper, _, err := p.create("s", 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fill(filepath.Join(upper, "f"), 32<<20); !isDiskFull(err) {
		t.Fatalf("writing past 16 MiB: %v", err)
	}
	if err := p.destroy("s"); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dataDir); err != nil {
		t.Fatal(err)
	}
	waitQgroupsGone(t, outer)
}

func TestDiskPoolReopenReusesMount(t *testing.T) {
	p := newDiskPool(t)
	if p.Device() == "" || !strings.HasPrefix(p.Device(), "/dev/loop") {
		t.Fatalf("device %q", p.Device())
	}
	dio, _ := os.ReadFile("/sys/block/" + filepath.Base(p.Device()) + "/loop/dio")
	t.Logf("%s: direct I/O %s", p.Device(), bytes.TrimSpace(dio))
	q, err := OpenDiskPool(DiskPoolConfig{DataDir: filepath.Dir(p.Dir()), NoMount: true})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if q.Device() != p.Device() {
		t.Fatalf("reopened on %s, first on %s", q.Device(), p.Device())
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if c := strings.Count(string(mounts), " "+p.Dir()+" "); c != 1 {
		t.Fatalf("%s is mounted %d times", p.Dir(), c)
	}
	if loopOf(p.Image()) != p.Device() {
		t.Fatalf("image attached to %q, want %s", loopOf(p.Image()), p.Device())
	}
	// Unmounted, NoMount refuses, and a new open attaches it again.
	if err := p.Unmount(); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDiskPool(DiskPoolConfig{DataDir: filepath.Dir(p.Dir()), NoMount: true}); err == nil {
		t.Fatal("NoMount mounted the pool")
	}
	r, err := OpenDiskPool(DiskPoolConfig{DataDir: filepath.Dir(p.Dir())})
	if err != nil {
		t.Fatal(err)
	}
	_ = r // cleanup unmounts it through p (same mount point)
}

// TestDiskLimitInSandbox: a sandbox writing past its limit gets EDQUOT,
// inside and through the agent; its neighbour is unaffected; delete leaves
// no subvolume and no qgroup. Under runsc too: its gofer writes the same
// host overlay, whose upper dir is the subvolume.
func TestDiskLimitInSandbox(t *testing.T) {
	eachRuntime(t, []string{"crun", "runsc"}, testDiskLimitInSandbox)
}

func testDiskLimitInSandbox(t *testing.T, name string) {
	ref, _ := env(t)
	pool := newDiskPool(t)
	rt := newRuntime(t, name, func(c *Config) { c.Disk = pool })
	ctx := context.Background()
	mk := func(id string, disk int64) {
		t.Helper()
		if _, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: ref, Resources: sandbox.Resources{DiskBytes: disk}}); err != nil {
			t.Fatal(err)
		}
		if err := rt.Start(ctx, id, sandbox.StartSpec{}); err != nil {
			t.Fatal(err)
		}
	}
	id, nb := "disk-"+randSuffix(), "disknb-"+randSuffix()
	mk(id, 32<<20)
	mk(nb, 32<<20)
	out, code := execOut(t, rt, id, "sh", "-c", "dd if=/dev/zero of=/big bs=1M count=64 2>&1; echo rc=$?")
	if code != 0 || !strings.Contains(out, "rc=1") || !(strings.Contains(out, "quota") || strings.Contains(out, "space")) {
		t.Fatalf("dd past the limit: %q (code %d); want Disk quota exceeded", out, code)
	}
	if out, code := execOut(t, rt, nb, "sh", "-c", "dd if=/dev/zero of=/f bs=1M count=16 2>&1 && echo ok"); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("neighbour: %q (code %d)", out, code)
	}
	// Over the API's file path: the agent's error.
	if err := writeFile(ctx, rt, id, "/more", bytes.Repeat([]byte{'y'}, 40<<20)); !errors.Is(err, sandbox.ErrResourceExhausted) {
		t.Fatalf("WriteFile past the limit: %v; want RESOURCE_EXHAUSTED", err)
	}
	for _, s := range []string{id, nb} {
		if err := rt.Delete(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if entries, _ := os.ReadDir(pool.Dir()); len(entries) != 0 {
		t.Fatalf("left in the pool: %v", entries)
	}
	waitQgroupsGone(t, pool)
}

func randSuffix() string { return strconv.FormatUint(rand.Uint64()>>40, 36) }

// execOut runs argv in sandbox id and returns its stdout and stderr, and
// exit code.
func execOut(t *testing.T, rt *Runtime, id string, argv ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ag, err := rt.Agent(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	r, err := runtimetest.Exec(ctx, ag, sandbox.ExecSpec{Command: argv})
	if err != nil {
		t.Fatalf("exec %q: %v", argv, err)
	}
	return r.Stdout + r.Stderr, r.Exit.Code
}

func writeFile(ctx context.Context, rt *Runtime, id, path string, data []byte) error {
	ag, err := rt.Agent(ctx, id)
	if err != nil {
		return err
	}
	return ag.WriteFile(ctx, path, 0o644, bytes.NewReader(data))
}

// withDisk gives a test runtime a disk pool and a default disk limit.
func withDisk(p *DiskPool, limit int64) func(*Config) {
	return func(c *Config) { c.Disk, c.Defaults.DiskBytes = p, limit }
}

// diskState lists what a runtime's disk pool holds: subvolumes and (after
// a commit that lets the cleaner drop deleted ones) qgroups.
func diskState(t testing.TB, rt *Runtime) []string {
	p := rt.cfg.Disk
	if p == nil {
		return nil
	}
	var out []string
	entries, _ := os.ReadDir(p.Dir())
	for _, e := range entries {
		out = append(out, "subvolume "+filepath.Join(p.Dir(), e.Name()))
	}
	if fd, err := unix.Open(p.Dir(), unix.O_RDONLY, 0); err == nil {
		_ = btrfsSync(fd)
		unix.Close(fd)
	}
	q, err := p.qgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range q {
		out = append(out, "qgroup "+g)
	}
	return out
}

// BenchmarkSubvolume: the disk pool's part of a sandbox's create and delete:
// a subvolume with a qgroup limit and two dirs, then its deletion, and
// (once per b.N) the commit that lets btrfs's cleaner free them.
func BenchmarkSubvolume(b *testing.B) {
	for _, tc := range []struct {
		limit    int64
		existing int
	}{{0, 0}, {1 << 30, 0}, {1 << 30, 500}} {
		b.Run(fmt.Sprintf("limit=%dMiB/existing=%d", tc.limit>>20, tc.existing), func(b *testing.B) {
			limit := tc.limit
			p := newDiskPool(b)
			// Neighbours, each with a file, as running sandboxes have.
			slab0 := meminfo(b, "Slab")
			for i := 0; i < tc.existing; i++ {
				upper, _, err := p.create("n"+strconv.Itoa(i), limit)
				if err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(upper, "f"), bytes.Repeat([]byte{'n'}, 64<<10), 0o644); err != nil {
					b.Fatal(err)
				}
			}
			// Kernel memory per subvolume (noisy on a shared machine).
			slabPer := float64(meminfo(b, "Slab")-slab0) / float64(max(tc.existing, 1))
			b.Cleanup(func() {
				for i := 0; i < tc.existing; i++ {
					_ = p.destroy("n" + strconv.Itoa(i))
				}
			})
			fd, err := unix.Open(p.Dir(), unix.O_RDONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer unix.Close(fd)
			if err := btrfsSync(fd); err != nil {
				b.Fatal(err)
			}
			cpu0 := processTreeCPU()
			var create, destroy time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				name := "b" + strconv.Itoa(i)
				t0 := time.Now()
				upper, _, err := p.create(name, limit)
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := os.WriteFile(filepath.Join(upper, "f"), []byte("x"), 0o644); err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				if err := p.destroy(name); err != nil {
					b.Fatal(err)
				}
				create += t1.Sub(t0)
				destroy += time.Since(t2)
			}
			// The commit that accounts them: qgroups' cost is mostly here.
			t3 := time.Now()
			if err := btrfsSync(fd); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(time.Since(t3).Microseconds())/1000, "final-commit-ms")
			if tc.existing > 0 {
				b.ReportMetric(slabPer, "slab-KiB/subvolume")
			}
			b.ReportMetric(float64((processTreeCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
			b.ReportMetric(float64(create.Microseconds())/float64(b.N), "create-us/op")
			b.ReportMetric(float64(destroy.Microseconds())/float64(b.N), "destroy-us/op")
		})
	}
}

// BenchmarkWritableLayer: the filesystem part of a sandbox's life without
// the container: make the writable layer, mount the overlay, write a small
// file through it, unmount, remove the layer; on the data dir's filesystem
// (the runtime without a disk pool) and as a limited subvolume. It reports
// this process's CPU (kernel work included) per op.
func BenchmarkWritableLayer(b *testing.B) {
	ref, images := env(b)
	img, err := images.Get(context.Background(), ref, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, disk := range []bool{false, true} {
		b.Run("disk="+strconv.FormatBool(disk), func(b *testing.B) {
			root := b.TempDir()
			rt := &Runtime{}
			if disk {
				rt.cfg.Disk = newDiskPool(b)
			}
			cpu0 := processTreeCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dir := filepath.Join(root, strconv.Itoa(i))
				rootfs := filepath.Join(dir, "rootfs")
				if err := os.MkdirAll(rootfs, 0o755); err != nil {
					b.Fatal(err)
				}
				upper, work, err := rt.writableLayer(dir, 1<<30)
				if err != nil {
					b.Fatal(err)
				}
				if err := mountOverlay(img.Layers, upper, work, rootfs, disk); err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(rootfs, "tmp", "f"), []byte("hello"), 0o644); err != nil {
					b.Fatal(err)
				}
				if err := unmount(rootfs); err != nil {
					b.Fatal(err)
				}
				if disk {
					err = rt.cfg.Disk.destroy(filepath.Base(dir))
				}
				if err == nil {
					err = os.RemoveAll(dir)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((processTreeCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}

// BenchmarkDiskFileWrite: a 100 MiB file written into a sandbox through
// its agent and read back, on the data dir's filesystem and in the disk
// pool, with the CPU of this process (kernel work included) per op.
func BenchmarkDiskFileWrite(b *testing.B) {
	ref, _ := env(b)
	data := bytes.Repeat([]byte("0123456789abcdef"), (100<<20)/16)
	for _, disk := range []bool{false, true} {
		b.Run("disk="+strconv.FormatBool(disk), func(b *testing.B) {
			var mods []func(*Config)
			if disk {
				mods = append(mods, withDisk(newDiskPool(b), 1<<30))
			}
			rt := newRuntime(b, "crun", mods...)
			ctx := context.Background()
			id := "dw-" + randSuffix()
			if _, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: ref}); err != nil {
				b.Fatal(err)
			}
			if err := rt.Start(ctx, id, sandbox.StartSpec{}); err != nil {
				b.Fatal(err)
			}
			ag, err := rt.Agent(ctx, id)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			cpu0 := processTreeCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := ag.WriteFile(ctx, "/bench.bin", 0o600, bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((processTreeCPU()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}

// meminfo returns a field of /proc/meminfo in KiB.
func meminfo(t testing.TB, field string) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in /proc/meminfo", field)
	return 0
}

// TestDiskAgentExplain checks which write errors name the disk limit: a
// quota error, and a full pool under the root filesystem, but not a full
// /dev/shm (its own 64 MiB tmpfs).
func TestDiskAgentExplain(t *testing.T) {
	a := diskAgent{limit: 48 << 20}
	full := func(errno error) error {
		return sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonFileTooLarge, "write agent-file: the sandbox's disk is full: %w", errno)
	}
	for _, tc := range []struct {
		path   string
		err    error
		reason string
		says   string
	}{
		{"/data/big", full(unix.EDQUOT), sandbox.ReasonDiskLimit, "disk limit of 48 MiB"},
		{"/data/big", full(unix.ENOSPC), sandbox.ReasonDiskPoolFull, "disk for sandboxes is full"},
		{"/dev/shm/big", full(unix.ENOSPC), sandbox.ReasonFileTooLarge, "the sandbox's disk is full"},
		{"/data/x", sandbox.NotFound(sandbox.ReasonFileNotFound, "no such file"), sandbox.ReasonFileNotFound, "no such file"},
	} {
		got := a.explain("write", tc.path, tc.err)
		if sandbox.ReasonOf(got) != tc.reason || !strings.Contains(got.Error(), tc.says) {
			t.Errorf("%s, %v: got %v (reason %s), want reason %s saying %q", tc.path, tc.err, got, sandbox.ReasonOf(got), tc.reason, tc.says)
		}
	}
	// While the guard has frozen the pool (diskguard.go), EDQUOT is the
	// freeze's, not the sandbox's limit.
	a.pool = &DiskPool{guard: &diskGuard{frozen: map[uint64]uint64{256: 0}}}
	got := a.explain("write", "/data/big", full(unix.EDQUOT))
	if sandbox.ReasonOf(got) != sandbox.ReasonDiskPoolFull || !strings.Contains(got.Error(), "frozen") || sandbox.RetryAfterOf(got) == 0 {
		t.Errorf("EDQUOT while frozen: got %v (reason %s), want reason %s saying frozen, with a retry delay", got, sandbox.ReasonOf(got), sandbox.ReasonDiskPoolFull)
	}
}

// TestRemoveDropsPages: a large file that writeback has begun to write,
// removed through the agent, by a process in the sandbox or by a write
// over it (DiskPool.Reclaim), or deleted with its sandbox (dropDirty), is
// not written back; one another process holds keeps its content.
func TestRemoveDropsPages(t *testing.T) {
	ref, _ := env(t)
	pool := newDiskPool(t)
	if pool.Device() == "" {
		t.Fatal("the test pool has no loop device to count writes of")
	}
	rt := newRuntime(t, "crun", func(c *Config) { c.Disk = pool })
	ctx := context.Background()
	// As sbx serve runs it; stopped before the pool's unmount.
	reclaimCtx, stopReclaim := context.WithCancel(ctx)
	reclaimDone := make(chan struct{})
	go func() { defer close(reclaimDone); pool.Reclaim(reclaimCtx, slog.Default()) }()
	t.Cleanup(func() { stopReclaim(); <-reclaimDone })
	id := "drop-" + randSuffix()
	if _, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: ref}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Delete(ctx, id) })
	if err := rt.Start(ctx, id, sandbox.StartSpec{}); err != nil {
		t.Fatal(err)
	}
	ag, err := rt.Agent(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	poolFD, err := unix.Open(pool.Dir(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(poolFD)
	stat := filepath.Join("/sys/block", filepath.Base(pool.Device()), "stat")
	sync := func() {
		t.Helper()
		if err := unix.Syncfs(poolFD); err != nil {
			t.Fatal(err)
		}
	}
	written := func() int64 { // bytes the pool's device wrote so far
		t.Helper()
		b, err := os.ReadFile(stat)
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseInt(strings.Fields(string(b))[6], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n * 512
	}
	// write makes a 64 MiB file in the sandbox and has writeback write its
	// first page, as background writeback does when dirty pages pile up.
	write := func(name, user string) {
		t.Helper()
		r, err := runtimetest.Exec(ctx, ag, sandbox.ExecSpec{User: user, Command: []string{"dd", "if=/dev/zero", "of=/tmp/" + name, "bs=1M", "count=64"}})
		if err != nil || r.Exit.Code != 0 {
			t.Fatalf("dd as %q: %v, %+v", user, err, r)
		}
		upper, err := filepath.Glob(filepath.Join(pool.Dir(), "*", "upper", "tmp", name))
		if err != nil || len(upper) != 1 {
			t.Fatalf("the file in the upper layer: %v, %v", upper, err)
		}
		fd, err := unix.Open(upper[0], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.SyncFileRange(fd, 0, 4096, unix.SYNC_FILE_RANGE_WRITE_AND_WAIT); err != nil {
			t.Fatal(err)
		}
	}

	// removed checks that remove, which takes the last name of a 64 MiB
	// file whose writeback began, has it reclaimed, not written back.
	removed := func(what string, remove func()) {
		t.Helper()
		before, reclaimed := written(), pool.reclaimed.Load()
		remove()
		for deadline := time.Now().Add(10 * time.Second); pool.reclaimed.Load() == reclaimed; {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the file was not reclaimed within 10 s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
		sync()
		if n := written() - before; n > 8<<20 {
			t.Fatalf("%s: %d MiB of the 64 MiB file were written back", what, n>>20)
		}
	}
	for _, user := range []string{"", "1000"} {
		sync()
		write("big", user)
		removed("the agent's remove of a file of user "+user, func() {
			if err := ag.Remove(ctx, "/tmp/big", false); err != nil {
				t.Fatal(err)
			}
		})
	}
	sync()
	write("rm", "1000")
	removed("rm in the sandbox", func() {
		if out, code := execOut(t, rt, id, "rm", "/tmp/rm"); code != 0 {
			t.Fatalf("rm: %s (code %d)", out, code)
		}
	})
	sync()
	write("replaced", "")
	removed("a write over the file", func() {
		if err := writeFile(ctx, rt, id, "/tmp/replaced", []byte("new")); err != nil {
			t.Fatal(err)
		}
	})

	// A file a process in the sandbox has open keeps its content for it.
	write("held", "")
	if out, code := execOut(t, rt, id, "sh", "-c", "sleep 600 </tmp/held >/dev/null 2>&1 &"); code != 0 {
		t.Fatalf("sleep: %s (code %d)", out, code)
	}
	if err := ag.Remove(ctx, "/tmp/held", false); err != nil {
		t.Fatal(err)
	}
	out, code := execOut(t, rt, id, "sh", "-c", "wc -c </proc/$(pidof sleep)/fd/0")
	if code != 0 || strings.TrimSpace(out) != strconv.Itoa(64<<20) {
		t.Fatalf("the held file reads %q bytes (code %d), want %d", out, code, 64<<20)
	}

	// The sandbox's deletion: its files are not written back either
	// (dropDirty). The held file is written first: unlinked, it is out of
	// the deletion's reach.
	sync()
	write("left", "")
	before := written()
	if err := rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	sync()
	if n := written() - before; n > 8<<20 {
		t.Fatalf("deleting a sandbox with a 64 MiB file wrote %d MiB of it", n>>20)
	}
}
