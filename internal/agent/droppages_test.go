package agent_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/runtime/local"
	"github.com/sbx-run/sbx/internal/testenv"
)

// dropOverlay is an overlay like a sandbox's root: a lower layer on this
// test's filesystem, the upper layer on a disk pool (btrfs on a loop
// device, whose writes the test counts).
type dropOverlay struct {
	pool                 *local.DiskPool
	lower, upper, merged string
	// proc holds this process alone, as /proc does the sandbox's in the
	// agent (this host's pid 1 may keep its maps from root).
	proc string
}

func newDropOverlay(t *testing.T) *dropOverlay {
	t.Helper()
	testenv.Require(t, true, "mkfs.btrfs")
	pool, err := local.OpenDiskPool(local.DiskPoolConfig{DataDir: t.TempDir(), Size: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pool.Unmount(); err != nil {
			t.Error(err)
		}
	})
	if pool.Device() == "" {
		// The temp dir is on btrfs itself: no loop device to count.
		if testenv.InCI() {
			t.Fatal("the test's temp dir is on btrfs; this test counts the writes of an image-backed pool")
		}
		t.Skip("the test's temp dir is on btrfs; this test counts the writes of an image-backed pool")
	}
	o := &dropOverlay{pool: pool, lower: t.TempDir(), upper: filepath.Join(pool.Dir(), "upper"), merged: t.TempDir(), proc: t.TempDir()}
	if err := os.Symlink(fmt.Sprintf("/proc/%d", os.Getpid()), filepath.Join(o.proc, "1")); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(pool.Dir(), "work")
	for _, d := range []string{o.upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A file of the image, before the mount.
	if err := os.WriteFile(filepath.Join(o.lower, "image-file"), pattern(64<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := "lowerdir=" + o.lower + ",upperdir=" + o.upper + ",workdir=" + work
	if err := unix.Mount("overlay", o.merged, "overlay", 0, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(o.merged, unix.MNT_DETACH) })
	return o
}

func pattern(n int) []byte {
	b := bytes.Repeat([]byte("sbx drop pages "), n/15+1)
	return b[:n]
}

// writeStarted writes n bytes to name in the overlay and has writeback
// write its first page, as background writeback does when dirty pages
// pile up: btrfs then holds the file until the rest of that extent is
// written.
func (o *dropOverlay) writeStarted(t *testing.T, name string, n int) string {
	t.Helper()
	o.sync(t) // what earlier tests left
	path := filepath.Join(o.merged, name)
	if err := os.WriteFile(path, pattern(n), 0o644); err != nil {
		t.Fatal(err)
	}
	// Overlayfs passes no sync_file_range down: on the upper file itself.
	fd, err := unix.Open(filepath.Join(o.upper, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.SyncFileRange(fd, 0, 4096, unix.SYNC_FILE_RANGE_WRITE_AND_WAIT); err != nil {
		t.Fatal(err)
	}
	return path
}

// written runs f, syncs the pool, and returns the bytes its loop device
// wrote meanwhile (the pool's other dirty pages included: writeStarted
// syncs before it writes).
func (o *dropOverlay) written(t *testing.T, f func()) int64 {
	t.Helper()
	stat := filepath.Join("/sys/block", filepath.Base(o.pool.Device()), "stat")
	sectors := func() int64 {
		b, err := os.ReadFile(stat)
		if err != nil {
			t.Fatal(err)
		}
		fields := strings.Fields(string(b))
		n, err := strconv.ParseInt(fields[6], 10, 64) // sectors written
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := sectors()
	f()
	o.sync(t)
	return (sectors() - before) * 512
}

// sync writes all of the pool's dirty pages.
func (o *dropOverlay) sync(t *testing.T) {
	t.Helper()
	fd, err := unix.Open(o.pool.Dir(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		t.Fatal(err)
	}
}

func (o *dropOverlay) remove(t *testing.T, path string) {
	t.Helper()
	if err := agent.UnlinkDropping(o.merged, o.proc, path, func() error { return os.Remove(path) }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s is still there: %v", path, err)
	}
}

func TestUnlinkDropping(t *testing.T) {
	o := newDropOverlay(t)
	if agent.UpperDev(o.merged) == 0 {
		t.Fatal("no upper layer found in the overlay")
	}
	if dev := agent.UpperDev(t.TempDir()); dev != 0 {
		t.Fatalf("a plain directory has an upper layer of device %d", dev)
	}

	t.Run("removed file is not written back", func(t *testing.T) {
		path := o.writeStarted(t, "removed", 64<<20)
		if n := o.written(t, func() { o.remove(t, path) }); n > 8<<20 {
			t.Fatalf("removing a 64 MiB file wrote %d MiB of it", n>>20)
		}
		// What a plain unlink costs on this kernel, for the record.
		path = o.writeStarted(t, "unlinked", 64<<20)
		n := o.written(t, func() {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		})
		t.Logf("a plain unlink of a 64 MiB file whose writeback began wrote %d MiB", n>>20)
	})

	t.Run("another user's file is not written back", func(t *testing.T) {
		path := o.writeStarted(t, "users", 64<<20)
		if err := os.Chown(path, 1000, 1000); err != nil {
			t.Fatal(err)
		}
		if n := o.written(t, func() { o.remove(t, path) }); n > 8<<20 {
			t.Fatalf("removing a 64 MiB file of uid 1000 wrote %d MiB of it", n>>20)
		}
		if fsuid, _ := unix.SetfsuidRetUid(-1); fsuid != 0 {
			t.Fatalf("this thread's fsuid is %d after the remove", fsuid)
		}
	})

	t.Run("replaced file is not written back", func(t *testing.T) {
		path := o.writeStarted(t, "replaced", 64<<20)
		tmp := filepath.Join(o.merged, "replacement")
		if err := os.WriteFile(tmp, []byte("new"), 0o644); err != nil {
			t.Fatal(err)
		}
		n := o.written(t, func() {
			if err := agent.UnlinkDropping(o.merged, o.proc, path, func() error { return os.Rename(tmp, path) }); err != nil {
				t.Fatal(err)
			}
		})
		if n > 8<<20 {
			t.Fatalf("replacing a 64 MiB file wrote %d MiB of it", n>>20)
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "new" {
			t.Fatalf("the replacement reads %q, %v", b, err)
		}
	})

	t.Run("open file keeps its content", func(t *testing.T) {
		path := o.writeStarted(t, "open", 32<<20)
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		o.remove(t, path)
		if b, err := os.ReadFile(f.Name()); err == nil {
			t.Fatalf("the name still reads %d bytes", len(b))
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(f); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), pattern(32<<20)) {
			t.Fatalf("the open file reads %d bytes after the remove, not its 32 MiB", buf.Len())
		}
	})

	t.Run("mapped file keeps its content", func(t *testing.T) {
		path := o.writeStarted(t, "mapped", 32<<20)
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := unix.Mmap(int(f.Fd()), 0, 32<<20, unix.PROT_READ, unix.MAP_SHARED)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(m)
		o.remove(t, path)
		// An emptied file would fault here (SIGBUS).
		if !bytes.Equal(m, pattern(32<<20)) {
			t.Fatal("the mapping changed")
		}
	})

	t.Run("file with another name keeps its content", func(t *testing.T) {
		path := o.writeStarted(t, "linked", 32<<20)
		other := filepath.Join(o.merged, "other-name")
		if err := os.Link(path, other); err != nil {
			t.Fatal(err)
		}
		o.remove(t, path)
		if b, err := os.ReadFile(other); err != nil || !bytes.Equal(b, pattern(32<<20)) {
			t.Fatalf("the other name reads %d bytes, %v", len(b), err)
		}
	})

	t.Run("image file is not copied up", func(t *testing.T) {
		path := filepath.Join(o.merged, "image-file")
		o.sync(t)
		if n := o.written(t, func() { o.remove(t, path) }); n > 8<<20 {
			t.Fatalf("removing a 64 MiB file of the image wrote %d MiB", n>>20)
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(o.upper, "image-file"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
			t.Fatalf("the upper layer has no whiteout for the removed file: mode %o, %v", st.Mode, err)
		}
		if b, err := os.ReadFile(filepath.Join(o.lower, "image-file")); err != nil || len(b) != 64<<20 {
			t.Fatalf("the image's file reads %d bytes, %v", len(b), err)
		}
	})

	t.Run("failed unlink leaves the file", func(t *testing.T) {
		path := o.writeStarted(t, "kept", 32<<20)
		refused := errors.New("refused")
		if err := agent.UnlinkDropping(o.merged, o.proc, path, func() error { return refused }); err != refused {
			t.Fatalf("got %v, want the unlink's error", err)
		}
		if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, pattern(32<<20)) {
			t.Fatalf("the file reads %d bytes, %v", len(b), err)
		}
		o.remove(t, path)
		missing := filepath.Join(o.merged, "missing")
		if err := agent.UnlinkDropping(o.merged, o.proc, missing, func() error { return os.Remove(missing) }); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("removing a missing file: %v", err)
		}
	})
}
