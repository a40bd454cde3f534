package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func unpackEntries(t *testing.T, entries ...entry) (string, error) {
	t.Helper()
	d := filepath.Join(t.TempDir(), "layer")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := unpack(d, bytes.NewReader(layerTar(t, entries...)), 0)
	return d, err
}

func TestUnpackFileTypesAndMetadata(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for ownership, devices and trusted xattrs")
	}
	d, err := unpackEntries(t,
		dir("bin/"),
		entry{name: "bin/tool", body: "#!/bin/sh\n", typ: tar.TypeReg, mode: 0o4755, uid: 0, gid: 0},
		entry{name: "home/u/", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1001},
		entry{name: "home/u/f", body: "x", typ: tar.TypeReg, mode: 0o640, uid: 1000, gid: 1001,
			xattrs: map[string]string{"user.note": "hello", "trusted.overlay.redirect": "/etc"}},
		entry{name: "bin/sh", typ: tar.TypeSymlink, link: "tool", uid: 5, gid: 6},
		entry{name: "bin/abs", typ: tar.TypeSymlink, link: "/etc/passwd"},
		entry{name: "bin/hard", typ: tar.TypeLink, link: "bin/tool"},
		entry{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		entry{name: "dev/blk", typ: tar.TypeBlock, mode: 0o600, major: 7, minor: 0},
		entry{name: "dev/sda", typ: tar.TypeBlock, mode: 0o666, major: 8, minor: 0},
		entry{name: "dev/zero0", typ: tar.TypeChar, mode: 0o600},
		// A device replacing an earlier entry of the layer removes it.
		file("dev/was-file", "x"),
		entry{name: "dev/was-file", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 5},
		entry{name: "dev/fifo", typ: tar.TypeFifo, mode: 0o644},
		entry{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		// Whiteouts and an opaque dir.
		file(".wh.gone", ""),
		file("etc/.wh.passwd", ""),
		file("opaque/.wh..wh..opq", ""),
		file("opaque/kept", "k"),
		file(".wh..wh.plnk", ""),
		// A later entry replaces an earlier one of the same layer.
		file("bin/replaced", "old"),
		file("bin/replaced", "new"),
	)
	if err != nil {
		t.Fatal(err)
	}
	st := func(p string) *unix.Stat_t {
		t.Helper()
		var s unix.Stat_t
		if err := unix.Lstat(filepath.Join(d, p), &s); err != nil {
			t.Fatal(err)
		}
		return &s
	}
	if s := st("bin/tool"); s.Mode&0o7777 != 0o4755 || s.Mode&unix.S_IFMT != unix.S_IFREG || s.Nlink != 2 {
		t.Fatalf("bin/tool mode %o nlink %d", s.Mode, s.Nlink)
	}
	if st("bin/hard").Ino != st("bin/tool").Ino {
		t.Fatal("bin/hard is not a hard link of bin/tool")
	}
	if s := st("home/u"); s.Mode&0o7777 != 0o700 || s.Uid != 1000 || s.Gid != 1001 {
		t.Fatalf("home/u %o %d:%d", s.Mode, s.Uid, s.Gid)
	}
	if s := st("home/u/f"); s.Mode&0o7777 != 0o640 || s.Uid != 1000 || s.Gid != 1001 || s.Mtim.Sec != 1704164645 {
		t.Fatalf("home/u/f %o %d:%d mtime %d", s.Mode, s.Uid, s.Gid, s.Mtim.Sec)
	}
	if s := st("home/u"); s.Mtim.Sec != 1704164645 {
		t.Fatalf("dir mtime %d not restored after its entries", s.Mtim.Sec)
	}
	buf := make([]byte, 64)
	if n, err := unix.Lgetxattr(filepath.Join(d, "home/u/f"), "user.note", buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("user.note xattr: %q %v", buf[:n], err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(d, "home/u/f"), "trusted.overlay.redirect", buf); err == nil {
		t.Fatal("a trusted.overlay xattr from the tar was applied")
	}
	if tgt, _ := os.Readlink(filepath.Join(d, "bin/sh")); tgt != "tool" || st("bin/sh").Uid != 5 {
		t.Fatalf("bin/sh -> %q uid %d", tgt, st("bin/sh").Uid)
	}
	if tgt, _ := os.Readlink(filepath.Join(d, "bin/abs")); tgt != "/etc/passwd" {
		t.Fatalf("bin/abs -> %q", tgt)
	}
	// No device node of an image reaches the host (SECURITY.md, gap 3).
	for _, dev := range []string{"dev/null", "dev/blk", "dev/sda", "dev/was-file"} {
		if _, err := os.Lstat(filepath.Join(d, dev)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("device entry %s was created on the host (or an earlier entry kept): %v", dev, err)
		}
	}
	if s := st("dev/zero0"); s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 {
		t.Fatalf("a 0/0 character device (a whiteout) should be kept: %o rdev %d", s.Mode, s.Rdev)
	}
	if s := st("dev/fifo"); s.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Fatalf("dev/fifo %o", s.Mode)
	}
	if s := st("tmp"); s.Mode&0o7777 != 0o1777 {
		t.Fatalf("tmp %o", s.Mode)
	}
	for _, w := range []string{"gone", "etc/passwd"} {
		if s := st(w); s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 {
			t.Fatalf("whiteout %s is %o rdev %d, want a 0/0 char device", w, s.Mode, s.Rdev)
		}
	}
	if _, err := os.Lstat(filepath.Join(d, ".wh.gone")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal(".wh.gone left in place")
	}
	if n, err := unix.Lgetxattr(filepath.Join(d, "opaque"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Fatalf("opaque xattr: %q %v", buf[:n], err)
	}
	if _, err := os.Lstat(filepath.Join(d, "opaque/.wh..wh..opq")); err == nil {
		t.Fatal("opaque marker left in place")
	}
	if _, err := os.Lstat(filepath.Join(d, ".wh..wh.plnk")); err == nil {
		t.Fatal("aufs metadata left in place")
	}
	if b, _ := os.ReadFile(filepath.Join(d, "bin/replaced")); string(b) != "new" {
		t.Fatalf("bin/replaced = %q", b)
	}
}

func TestUnpackHostileTars(t *testing.T) {
	outside := t.TempDir()
	for name, entries := range map[string][]entry{
		"dotdot":             {file("../escape", "x")},
		"dotdot-inner":       {file("a/../../escape", "x")},
		"symlink-then-write": {{name: "evil", typ: tar.TypeSymlink, link: outside}, file("evil/escape", "x")},
		"relative-symlink":   {{name: "evil", typ: tar.TypeSymlink, link: "../../../../../../../.." + outside}, file("evil/escape", "x")},
		"inner-symlink":      {dir("real/"), {name: "evil", typ: tar.TypeSymlink, link: "real"}, file("evil/escape", "x")},
		"hardlink-out":       {{name: "h", typ: tar.TypeLink, link: "../../../../etc/passwd"}},
		"hardlink-abs":       {{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}},
		"hardlink-via-link":  {{name: "evil", typ: tar.TypeSymlink, link: "/etc"}, {name: "h", typ: tar.TypeLink, link: "evil/passwd"}},
		"whiteout-via-link":  {{name: "evil", typ: tar.TypeSymlink, link: outside}, file("evil/.wh.escape", "")},
		"opaque-via-link":    {{name: "evil", typ: tar.TypeSymlink, link: outside}, file("evil/.wh..wh..opq", "")},
		"dir-over-symlink": {{name: "evil", typ: tar.TypeSymlink, link: outside},
			{name: "evil/sub/", typ: tar.TypeDir, mode: 0o755}},
		"empty-whiteout": {file("a/x", "x"), file("a/.wh.", "")},
	} {
		t.Run(name, func(t *testing.T) {
			d, err := unpackEntries(t, entries...)
			var ue *unsafeLayerError
			if err == nil || !errors.As(err, &ue) {
				t.Fatalf("got %v, want an unsafe layer error", err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Fatalf("wrote outside: %v", ents)
			}
			if _, err := os.Lstat(filepath.Join(filepath.Dir(d), "escape")); err == nil {
				t.Fatal("wrote next to the layer dir")
			}
		})
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Fatal(err)
	}
}

func TestHostileImageLeavesNothing(t *testing.T) {
	reg := newRegistry(t)
	outside := t.TempDir()
	push(t, reg.host+"/h/evil:1", image(t,
		layer(t, file("ok", "ok")),
		layer(t, entry{name: "evil", typ: tar.TypeSymlink, link: outside}, file("evil/pwned", "x"))))
	s := newStore(t, Config{})
	_, err := s.Get(bg, reg.host+"/h/evil:1", nil)
	wantErr(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonImageInvalid, "h/evil:1")
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("wrote outside: %v", ents)
	}
	if ents, _ := os.ReadDir(s.path(dirTemp)); len(ents) != 0 {
		t.Fatalf("temp leftovers %v", ents)
	}
	if ents, _ := os.ReadDir(s.path(dirManifests)); len(ents) != 0 {
		t.Fatalf("manifest recorded: %v", ents)
	}
}
