package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/testenv"
)

func TestRemoveUseReleaseGC(t *testing.T) {
	reg := newRegistry(t)
	base := layer(t, file("base", "base"))
	push(t, reg.host+"/g/a:1", image(t, base, layer(t, file("a", "a"))))
	push(t, reg.host+"/g/b:1", image(t, base, layer(t, file("b", "b"))))
	root := t.TempDir()
	s := newStore(t, Config{Root: root})
	a, err := s.Get(bg, reg.host+"/g/a:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Get(bg, reg.host+"/g/b:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(bg); len(list) != 2 || list[0].Ref != a.Ref || list[1].Ref != b.Ref {
		t.Fatalf("list %v", list)
	}

	if err := s.Use(a.Digest, "sbx-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Use(a.Digest, "sbx-1"); err != nil { // idempotent
		t.Fatal(err)
	}
	// Uses survive a restart.
	s = newStore(t, Config{Root: root})
	err = s.Remove(bg, a.Ref)
	wantErr(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonImageInUse, "sbx-1")
	if n, err := s.GC(bg); err != nil || n != 0 {
		t.Fatalf("GC with nothing to collect: %d %v", n, err)
	}
	if err := s.Release(a.Digest, "sbx-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(a.Digest, "sbx-1"); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := s.Remove(bg, a.Ref); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.Remove(bg, a.Ref), sandbox.ErrNotFound, sandbox.ReasonImageNotFound, a.Ref)
	if list, _ := s.List(bg); len(list) != 1 || list[0].Ref != b.Ref {
		t.Fatalf("list after remove %v", list)
	}

	// A leftover of an interrupted pull.
	junk := filepath.Join(root, dirTemp, "l-123")
	os.MkdirAll(filepath.Join(junk, "d", "x"), 0o755)
	n, err := s.GC(bg)
	if err != nil || n != 1 {
		t.Fatalf("GC removed %d layers (%v), want 1 (a's own)", n, err)
	}
	if _, err := os.Stat(a.Layers[1]); !os.IsNotExist(err) {
		t.Fatal("a's own layer survived GC")
	}
	if _, err := os.Stat(a.Layers[0]); err != nil {
		t.Fatal("the layer shared with b was collected")
	}
	if ents, _ := os.ReadDir(filepath.Join(root, dirTemp)); len(ents) != 0 {
		t.Fatalf("temp leftovers after GC: %v", ents)
	}
	if _, err := s.Get(bg, b.Ref, nil); err != nil {
		t.Fatal(err)
	}
	// a is pulled again (only its missing layer) after GC.
	if got, err := s.Get(bg, a.Ref, nil); err != nil || got.Layers[0] != a.Layers[0] {
		t.Fatalf("re-pull: %v %v", got, err)
	}

	// Bad input.
	wantErr(t, s.Use("sha256:"+sixtyFour('0'), "x"), sandbox.ErrNotFound, sandbox.ReasonImageNotFound, "sha256:")
	wantErr(t, s.Use(a.Digest, "../etc"), sandbox.ErrInvalidArgument, sandbox.ReasonInvalidSpec, "../etc")
	wantErr(t, s.Use("md5:x", "x"), sandbox.ErrInvalidArgument, sandbox.ReasonInvalidSpec, "md5")
	wantErr(t, s.Remove(bg, "nope:1"), sandbox.ErrNotFound, sandbox.ReasonImageNotFound, "nope:1")

	// Remove by digest drops every name of the image.
	if err := s.Remove(bg, b.Digest); err != nil {
		t.Fatal(err)
	}
	if n, err := s.GC(bg); err != nil || n != 1 {
		t.Fatalf("GC after removing b: %d %v", n, err)
	}
}

// TestReleaseExcept: uses whose holder is not kept are released (the
// image can then be removed); kept ones stay.
func TestReleaseExcept(t *testing.T) {
	reg := newRegistry(t)
	push(t, reg.host+"/g/a:1", image(t, layer(t, file("a", "a"))))
	push(t, reg.host+"/g/b:1", image(t, layer(t, file("b", "b"))))
	s := newStore(t, Config{Root: t.TempDir()})
	a, err := s.Get(bg, reg.host+"/g/a:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Get(bg, reg.host+"/g/b:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ digest, holder string }{{a.Digest, "gone-1"}, {a.Digest, "gone-2"}, {b.Digest, "live"}, {b.Digest, "gone-3"}} {
		if err := s.Use(u.digest, u.holder); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.ReleaseExcept(func(h string) bool { return h == "live" })
	if err != nil || n != 3 {
		t.Fatalf("ReleaseExcept: %d, %v; want 3 released", n, err)
	}
	if err := s.Remove(bg, a.Ref); err != nil {
		t.Errorf("remove of an image whose uses were all released: %v", err)
	}
	wantErr(t, s.Remove(bg, b.Ref), sandbox.ErrFailedPrecondition, sandbox.ReasonImageInUse, "live")
	if n, err := s.ReleaseExcept(func(string) bool { return true }); err != nil || n != 0 {
		t.Errorf("ReleaseExcept keeping all: %d, %v", n, err)
	}
}

// TestUsesDir: with Config.UsesDir the uses are recorded there, not under
// the root, and a store opened with one takes over the uses an earlier
// server recorded under the root: the image stays in use.
func TestUsesDir(t *testing.T) {
	reg := newRegistry(t)
	push(t, reg.host+"/g/a:1", image(t, layer(t, file("a", "a"))))
	root := t.TempDir()
	s := newStore(t, Config{Root: root})
	a, err := s.Get(bg, reg.host+"/g/a:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Use(a.Digest, "from-before"); err != nil {
		t.Fatal(err)
	}
	uses := filepath.Join(t.TempDir(), "image-uses")
	s = newStore(t, Config{Root: root, UsesDir: uses})
	if _, err := os.Stat(filepath.Join(root, dirUsers)); !os.IsNotExist(err) {
		t.Errorf("the root's uses dir is still there: %v", err)
	}
	wantErr(t, s.Remove(bg, a.Ref), sandbox.ErrFailedPrecondition, sandbox.ReasonImageInUse, "from-before")
	if err := s.Use(a.Digest, "new"); err != nil {
		t.Fatal(err)
	}
	hex := strings.TrimPrefix(a.Digest, "sha256:")
	for _, h := range []string{"from-before", "new"} {
		if _, err := os.Stat(filepath.Join(uses, hex, h)); err != nil {
			t.Errorf("use of %s: %v", h, err)
		}
	}
	for _, h := range []string{"from-before", "new"} {
		if err := s.Release(a.Digest, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remove(bg, a.Ref); err != nil {
		t.Errorf("remove once released: %v", err)
	}
}

// TestOverlayMount mounts a pulled image with its Layers as lowerdirs, as the
// local runtime does, and checks that whiteouts and opaque dirs hide what
// they must.
func TestOverlayMount(t *testing.T) {
	testenv.Require(t, true)
	if b, _ := os.ReadFile("/proc/filesystems"); !strings.Contains(string(b), "overlay") {
		if testenv.InCI() {
			t.Fatal("the kernel has no overlayfs")
		}
		t.Skip("the kernel has no overlayfs")
	}
	reg := newRegistry(t)
	push(t, reg.host+"/o/img:1", image(t,
		layer(t, file("keep", "k"), file("gone", "g"), dir("dir/"), file("dir/gone2", "g"), dir("opq/"), file("opq/old", "o")),
		layer(t, file(".wh.gone", ""), file("dir/.wh.gone2", ""), file("opq/.wh..wh..opq", ""), file("opq/new", "n")),
		layer(t, file("gone", "back")), // re-created above a whiteout
	))
	s := newStore(t, Config{})
	img, err := s.Get(bg, reg.host+"/o/img:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	lowers := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		lowers[len(lowers)-1-i] = l // overlayfs wants the top first
	}
	mnt := t.TempDir()
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lowers, ":")); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)

	for p, want := range map[string]string{"keep": "k", "opq/new": "n", "gone": "back"} {
		if b, err := os.ReadFile(filepath.Join(mnt, p)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", p, b, err, want)
		}
	}
	for _, p := range []string{"dir/gone2", "opq/old"} {
		if _, err := os.Lstat(filepath.Join(mnt, p)); !os.IsNotExist(err) {
			t.Errorf("%s is visible through the overlay (%v)", p, err)
		}
	}
}

func BenchmarkGetCached(b *testing.B) {
	reg := newRegistry(b)
	img := image(b, layer(b, file("a", "1")), layer(b, file("b", "2")), layer(b, file("c", "3")), layer(b, file("d", "4")))
	push(b, reg.host+"/bench/img:1", img)
	s := newStore(b, Config{})
	ref := reg.host + "/bench/img:1"
	if _, err := s.Get(bg, ref, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Get(bg, ref, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStoreIsPrivate checks that only root may enter the store, also one
// an older version made traversable (0711): its layers keep their images'
// setuid files (SECURITY.md, gap 3).
func TestStoreIsPrivate(t *testing.T) {
	root := filepath.Join(t.TempDir(), "images")
	for _, d := range []string{root, filepath.Join(root, dirLayers)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	newStore(t, Config{Root: root})
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	dirs := []string{root}
	for _, e := range ents {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(root, e.Name()))
		}
	}
	if len(dirs) < 3 {
		t.Fatalf("store made only %v", dirs)
	}
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s is %o, want 0700", d, fi.Mode().Perm())
		}
	}
}
