package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// newGuardedPool makes a 1 GiB pool image in a data dir that is a tmpfs of
// its own (in the test's private mount namespace), so the test can fill
// the data dir's filesystem without touching the host's.
func newGuardedPool(t *testing.T, reserve int64) (*DiskPool, string) {
	t.Helper()
	requireBtrfs(t)
	dataDir := t.TempDir()
	if err := unix.Mount("tmpfs", dataDir, "tmpfs", 0, "size=1200m"); err != nil {
		t.Fatal(err)
	}
	p, err := OpenDiskPool(DiskPoolConfig{DataDir: dataDir, Size: 1 << 30, Reserve: reserve})
	if err != nil {
		unix.Unmount(dataDir, unix.MNT_DETACH)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Unmount(); err != nil {
			t.Error(err)
		}
		if err := unix.Unmount(dataDir, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
	})
	return p, dataDir
}

// squeeze fills dataDir's filesystem with a file of its own until only
// leave bytes are free, and returns a func that frees it again.
func squeeze(t *testing.T, dataDir string, leave int64) func() {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dataDir, &st); err != nil {
		t.Fatal(err)
	}
	avail := int64(st.Bavail) * st.Bsize
	if avail <= leave {
		t.Fatalf("%s has only %d bytes free", dataDir, avail)
	}
	filler := filepath.Join(dataDir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, avail-leave); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	}
}

// qgroupMax returns the max_referenced of the subvolume name of p.
func qgroupMax(t *testing.T, p *DiskPool, name string) uint64 {
	t.Helper()
	fd, err := unix.Open(filepath.Join(p.Dir(), name), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	id, err := subvolID(fd)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := btrfsSysfs(fd)
	if err != nil {
		t.Fatal(err)
	}
	v, err := readUint(filepath.Join(dir, "qgroups", fmt.Sprintf("0_%d", id), "max_referenced"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestDiskGuard fills the data dir's filesystem below the reserve and
// checks that creates are refused, that a sandbox's subvolume stops
// growing (EDQUOT, not an I/O error of the pool), that a restarted server
// takes the freeze over, and that freeing space restores the limits.
func TestDiskGuard(t *testing.T) {
	const reserve = 64 << 20
	p, dataDir := newGuardedPool(t, reserve)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const limit = 512 << 20
	upper, _, err := p.create("a", limit)
	if err != nil {
		t.Fatal(err)
	}
	unlimited, _, err := p.create("b", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fill(filepath.Join(upper, "before"), 8<<20); err != nil {
		t.Fatal(err)
	}
	if err := p.guardStep(log); err != nil || p.Frozen() {
		t.Fatalf("with room: step %v, frozen %v", err, p.Frozen())
	}

	release := squeeze(t, dataDir, reserve/2)
	if _, _, err := p.create("c", limit); !errors.Is(err, sandbox.ErrResourceExhausted) || sandbox.ReasonOf(err) != sandbox.ReasonDiskPoolFull || sandbox.RetryAfterOf(err) == 0 {
		t.Fatalf("create below the reserve: %v, want resource_exhausted %s with a retry delay", err, sandbox.ReasonDiskPoolFull)
	}
	if err := p.guardStep(log); err != nil {
		t.Fatal(err)
	}
	if !p.Frozen() {
		t.Fatal("below the reserve, the pool is not frozen")
	}
	if _, err := os.Stat(filepath.Join(dataDir, frozenFile)); err != nil {
		t.Fatalf("the frozen limits are not kept: %v", err)
	}
	for _, dir := range []string{upper, unlimited} {
		if _, err := fill(filepath.Join(dir, "after"), 16<<20); !errors.Is(err, unix.EDQUOT) {
			t.Errorf("writing 16 MiB into a frozen subvolume: %v, want EDQUOT", err)
		}
		os.Remove(filepath.Join(dir, "after"))
	}

	// A restarted server (a second pool object on the same mount) takes
	// the freeze over and thaws it once there is room.
	q, err := OpenDiskPool(DiskPoolConfig{DataDir: dataDir, Reserve: reserve})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.loadFrozen(); err != nil {
		t.Fatal(err)
	}
	if !q.Frozen() {
		t.Fatal("a reopened pool does not know of the freeze")
	}
	release()
	if err := q.guardStep(log); err != nil {
		t.Fatal(err)
	}
	if q.Frozen() {
		t.Fatal("with room again, the pool stays frozen")
	}
	if _, err := os.Stat(filepath.Join(dataDir, frozenFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the frozen limits' file stays after the thaw: %v", err)
	}
	if got := qgroupMax(t, q, "a"); got != limit {
		t.Errorf("limit after the thaw is %d, want %d", got, limit)
	}
	if got := qgroupMax(t, q, "b"); got != 0 {
		t.Errorf("unlimited subvolume's limit after the thaw is %d, want none (0)", got)
	}
	if _, err := fill(filepath.Join(upper, "after"), 16<<20); err != nil {
		t.Fatalf("write after the thaw: %v", err)
	}
	if _, _, err := q.create("c", limit); err != nil {
		t.Fatalf("create after the thaw: %v", err)
	}
	for _, n := range []string{"a", "b", "c"} {
		if err := q.destroy(n); err != nil {
			t.Error(err)
		}
	}
}

// TestDiskGuardOff: a negative reserve turns the guard off.
func TestDiskGuardOff(t *testing.T) {
	p, dataDir := newGuardedPool(t, -1)
	release := squeeze(t, dataDir, 16<<20)
	defer release()
	if _, _, err := p.create("a", 64<<20); err != nil {
		t.Fatalf("create with the guard off: %v", err)
	}
	if err := p.destroy("a"); err != nil {
		t.Fatal(err)
	}
}

// TestCreateRefusedByGuard: a create that the guard refuses (past Admit,
// as in a race with the free space) fails with DISK_POOL_FULL and leaves
// nothing behind, and the next create once space is back runs.
func TestCreateRefusedByGuard(t *testing.T) {
	ref, _ := env(t)
	pool, dataDir := newGuardedPool(t, 64<<20)
	rt := newRuntime(t, "crun", withDisk(pool, 64<<20))
	ctx := context.Background()
	release := squeeze(t, dataDir, 32<<20)
	if err := rt.Admit(); sandbox.ReasonOf(err) != sandbox.ReasonDiskPoolFull {
		t.Errorf("Admit below the reserve: %v, want %s", err, sandbox.ReasonDiskPoolFull)
	}
	id := "guard-" + randSuffix()
	if _, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: ref}); sandbox.ReasonOf(err) != sandbox.ReasonDiskPoolFull {
		t.Fatalf("Create below the reserve: %v, want %s", err, sandbox.ReasonDiskPoolFull)
	}
	if entries, _ := os.ReadDir(pool.Dir()); len(entries) != 0 {
		t.Errorf("left in the pool: %v", entries)
	}
	release()
	if err := rt.Admit(); err != nil {
		t.Fatalf("Admit with room: %v", err)
	}
	if _, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: ref}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, id, sandbox.StartSpec{}); err != nil {
		t.Fatal(err)
	}
	if out, code := execOut(t, rt, id, "echo", "hi"); code != 0 || out != "hi\n" {
		t.Errorf("exec after the refused create: %q (code %d)", out, code)
	}
	if err := rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
}
