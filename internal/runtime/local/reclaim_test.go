package local

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fanEvent is a fanotify event as the kernel writes it with FAN_REPORT_FID.
func fanEvent(mask uint64, handleType int32, handle []byte) []byte {
	info := make([]byte, fanInfoFIDFixed+len(handle))
	info[0] = unix.FAN_EVENT_INFO_TYPE_FID
	binary.NativeEndian.PutUint16(info[2:], uint16(len(info)))
	binary.NativeEndian.PutUint32(info[12:], uint32(len(handle)))
	binary.NativeEndian.PutUint32(info[16:], uint32(handleType))
	copy(info[fanInfoFIDFixed:], handle)
	meta := make([]byte, fanMetadataLen)
	binary.NativeEndian.PutUint32(meta, uint32(fanMetadataLen+len(info)))
	meta[4] = unix.FANOTIFY_METADATA_VERSION
	binary.NativeEndian.PutUint16(meta[6:], fanMetadataLen)
	binary.NativeEndian.PutUint64(meta[8:], mask)
	return append(meta, info...)
}

func TestEachHandle(t *testing.T) {
	a, b := []byte("handle-a"), []byte("handle-b-longer")
	buf := append(fanEvent(unix.FAN_DELETE_SELF, 1, a), fanEvent(unix.FAN_Q_OVERFLOW, 1, []byte("skipped"))...)
	buf = append(buf, fanEvent(unix.FAN_DELETE_SELF, 2, b)...)
	var got []unix.FileHandle
	eachHandle(buf, func(h unix.FileHandle) { got = append(got, h) })
	if len(got) != 2 || got[0].Type() != 1 || !bytes.Equal(got[0].Bytes(), a) || got[1].Type() != 2 || !bytes.Equal(got[1].Bytes(), b) {
		t.Fatalf("handles: %v", got)
	}
	// Cut or corrupted buffers give what is whole in them, and no panic.
	for n := 0; n < len(buf); n++ {
		eachHandle(buf[:n], func(unix.FileHandle) {})
		bad := bytes.Clone(buf)
		bad[n] ^= 0xff
		eachHandle(bad, func(unix.FileHandle) {})
	}
}

// TestReclaimLeavesOpenFiles: Reclaim, on an overlay whose upper layer is
// on the pool as a sandbox's is, empties a removed file only once nothing
// holds it: an open file and a mapping keep their content while they
// last, another name keeps the file, and a removed file of a lower layer
// is not copied up.
func TestReclaimLeavesOpenFiles(t *testing.T) {
	pool := newDiskPool(t)
	lower, upper, work, merged := t.TempDir(), filepath.Join(pool.Dir(), "upper"), filepath.Join(pool.Dir(), "work"), t.TempDir()
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	content := bytes.Repeat([]byte("sbx reclaim "), (32<<20)/12+1)[:32<<20]
	if err := os.WriteFile(filepath.Join(lower, "image-file"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(merged, unix.MNT_DETACH) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pool.Reclaim(ctx, slog.Default()) }()
	t.Cleanup(func() { cancel(); <-done }) // before the pool's unmount

	// write makes a dirty 32 MiB file whose writeback began (on the upper
	// file: overlayfs passes no sync_file_range down).
	write := func(name string) string {
		t.Helper()
		path := filepath.Join(merged, name)
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(filepath.Join(upper, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.SyncFileRange(fd, 0, 4096, unix.SYNC_FILE_RANGE_WRITE_AND_WAIT); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// settle gives Reclaim time to act on what it was told (it is told
	// within microseconds; a truncation takes a few milliseconds).
	settle := func() { time.Sleep(300 * time.Millisecond) }
	waitReclaimed := func(since int64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); pool.reclaimed.Load() == since; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("not reclaimed within 10 s once released")
			}
		}
	}

	// heldThroughRemoval removes path while something holds it, checks
	// that the holder still sees all of it, and that the file is reclaimed
	// once released.
	heldThroughRemoval := func(t *testing.T, path string, check func(), release func()) {
		t.Helper()
		n0 := pool.reclaimed.Load()
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		settle()
		check()
		release()
		waitReclaimed(n0)
	}

	t.Run("open file", func(t *testing.T) {
		path := write("open")
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		heldThroughRemoval(t, path, func() {
			b, err := io.ReadAll(f)
			if err != nil || !bytes.Equal(b, content) {
				t.Fatalf("the open file reads %d bytes after its removal, %v", len(b), err)
			}
		}, func() { f.Close() })
	})
	t.Run("mapped file", func(t *testing.T) {
		path := write("mapped")
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := unix.Mmap(int(f.Fd()), 0, len(content), unix.PROT_READ, unix.MAP_SHARED)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		heldThroughRemoval(t, path, func() {
			if !bytes.Equal(m, content) { // an emptied file would fault here
				t.Fatal("the mapping changed")
			}
		}, func() { unix.Munmap(m) })
	})
	t.Run("file with another name", func(t *testing.T) {
		path := write("linked")
		other := filepath.Join(merged, "other-name")
		if err := os.Link(path, other); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		settle()
		if b, err := os.ReadFile(other); err != nil || !bytes.Equal(b, content) {
			t.Fatalf("the other name reads %d bytes, %v", len(b), err)
		}
	})
	t.Run("file of the image", func(t *testing.T) {
		if err := os.Remove(filepath.Join(merged, "image-file")); err != nil {
			t.Fatal(err)
		}
		settle()
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(upper, "image-file"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
			t.Fatalf("no whiteout in the upper layer: mode %o, %v", st.Mode, err)
		}
		if b, err := os.ReadFile(filepath.Join(lower, "image-file")); err != nil || !bytes.Equal(b, content) {
			t.Fatalf("the image's file reads %d bytes, %v", len(b), err)
		}
	})
}
