package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"golang.org/x/sys/unix"
)

// TestCgroup2Stub: on a hybrid host, crun's per-container writes where the
// cgroup2 mount was go to the server's own tmpfs, never to the host's, and
// each goes with its sandbox. Before the stub, every sandbox left a
// directory and a 4 KiB file in the host's memory until reboot.
func TestCgroup2Stub(t *testing.T) {
	rt := newRuntime(t, "crun")
	if rt.cg.stub == "" {
		host, err := detectHostLayout()
		if err != nil {
			t.Fatal(err)
		}
		if host == CgroupHybrid {
			t.Fatal("a hybrid host, but no tmpfs of ours where the cgroup2 mount was: crun writes into the host's tmpfs")
		}
		t.Skipf("the host's cgroups are %s, not hybrid: crun runs without unmounting anything", host)
	}
	hostCgroup2Dir.Lock()
	host := hostCgroup2Dir.f
	hostCgroup2Dir.Unlock()
	if host == nil {
		t.Fatal("no descriptor of the host's directory under the cgroup2 mount point")
	}
	h := harness(t, rt, sandbox.Resources{})
	id := runtimetest.NewID("stub")
	if _, err := rt.Create(context.Background(), sandbox.Spec{ID: id, Image: h.Image}); err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join(rt.cfg.CgroupParent, id)
	// crun does write there: this test would otherwise prove nothing.
	if _, err := os.Stat(filepath.Join(rt.cg.stub, rel, "cgroup.procs")); err != nil {
		t.Fatalf("crun wrote nothing for %s in the stub: %v", id, err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(int(host.Fd()), rel, &st, unix.AT_SYMLINK_NOFOLLOW); !errors.Is(err, unix.ENOENT) {
		t.Errorf("the host's tmpfs under the cgroup2 mount point has %s: %v", rel, err)
	}
	if err := rt.Stop(context.Background(), id, 0); err != nil {
		t.Fatal(err)
	}
	if err := rt.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(rt.cg.stub, rel)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is left in the stub after Delete: %v", rel, err)
	}
}

// detectHostLayout reads the host's cgroup layout from PID 1's mounts (this
// process's own have the cgroup2 mount removed).
func detectHostLayout() (CgroupLayout, error) {
	b, err := os.ReadFile("/proc/1/mountinfo")
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(b))
	v1, v2 := slices.Contains(fields, "cgroup"), slices.Contains(fields, "cgroup2")
	switch {
	case v1 && v2:
		return CgroupHybrid, nil
	case v1:
		return CgroupV1, nil
	default:
		return CgroupV2, nil
	}
}

// TestSweepLeftovers: the sweep removes exactly what crun leaves (a
// directory whose only entry is a regular cgroup.procs, one or two levels
// down) and nothing else.
func TestSweepLeftovers(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mount("sbx-test", dir, "tmpfs", 0, "mode=755"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	mk := func(p string, files ...string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(dir, p, f), []byte("123\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("sbx/sb-aaaaaaaaaaaaaaaa", "cgroup.procs")          // swept
	mk("sbx/sb-bbbbbbbbbbbbbbbb", "cgroup.procs")          // swept
	mk("sbx-bench-floor-1-0", "cgroup.procs")              // swept (one level)
	mk("sbx/keep-other-file", "cgroup.procs", "notes.txt") // kept: another file
	mk("sbx/keep-empty")                                   // kept: empty
	mk("a/b/keep-too-deep", "cgroup.procs")                // kept: three levels
	mk("sbx/keep-symlink")
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "sbx/keep-symlink/cgroup.procs")); err != nil {
		t.Fatal(err)
	}
	mk("sbx/keep-dir/cgroup.procs") // kept: cgroup.procs is a directory
	if err := os.Symlink(filepath.Join(dir, "sbx"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}

	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := sweepLeftovers(int(f.Fd()), 2)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("removed %d, want 3", n)
	}
	var left []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			left = append(left, rel)
		}
		return nil
	})
	want := []string{
		"a", "a/b", "a/b/keep-too-deep", "a/b/keep-too-deep/cgroup.procs", "link", "sbx",
		"sbx/keep-dir", "sbx/keep-dir/cgroup.procs", "sbx/keep-empty",
		"sbx/keep-other-file", "sbx/keep-other-file/cgroup.procs", "sbx/keep-other-file/notes.txt",
		"sbx/keep-symlink", "sbx/keep-symlink/cgroup.procs",
	}
	if !slices.Equal(left, want) {
		t.Errorf("left:\n%q\nwant:\n%q", left, want)
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Fatal(err)
	}
}
