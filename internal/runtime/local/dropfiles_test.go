package local

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDropDirty: a large dirty file of a layer is emptied; a clean one,
// a small one, and what a symlink or FIFO in the layer names, are not.
func TestDropDirty(t *testing.T) {
	layer, outside := t.TempDir(), t.TempDir()
	big := strings.Repeat("d", 32<<20)
	write := func(path, content string, sync bool) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(content); err != nil {
			t.Fatal(err)
		}
		if sync {
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(filepath.Join(layer, "upper/tmp/dirty"), big, false)
	write(filepath.Join(layer, "upper/tmp/clean"), big, true)
	write(filepath.Join(layer, "upper/small"), "small", false)
	write(filepath.Join(outside, "target"), big, false)
	if err := os.Symlink(filepath.Join(outside, "target"), filepath.Join(layer, "upper/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(layer, "upper/dirlink")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(layer, "upper/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Deeper than dropDepth: left alone.
	deep := filepath.Join(layer, strings.Repeat("d/", dropDepth+1))
	write(filepath.Join(deep, "dirty"), big, false)

	dropDirty(layer)

	for path, want := range map[string]int{
		filepath.Join(layer, "upper/tmp/dirty"): 0,
		filepath.Join(layer, "upper/tmp/clean"): len(big),
		filepath.Join(layer, "upper/small"):     len("small"),
		filepath.Join(outside, "target"):        len(big),
		filepath.Join(deep, "dirty"):            len(big),
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != int64(want) {
			t.Errorf("%s: %d bytes after dropDirty, want %d", path, fi.Size(), want)
		}
	}
}
