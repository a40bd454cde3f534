package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"

	"github.com/sbx-run/sbx/internal/image"
	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"golang.org/x/sys/unix"
)

// TestRunRootLayout: with a run root, a sandbox's dir and its container's
// OCI state are in it, its state dir (the agent's socket, the main log) on
// disk in its data dir under Root; a second Runtime finds the sandbox
// there, a data dir without a sandbox dir is removed at start, and Delete
// removes both dirs.
func TestRunRootLayout(t *testing.T) {
	rt := newRuntime(t, "crun")
	id, ag := runtimetest.Create(t, harness(t, rt, sandbox.Resources{}), "layout")
	dir := rt.dirOf(id)
	if filepath.Dir(dir) != filepath.Join(rt.cfg.RunRoot, "sb") {
		t.Fatalf("sandbox dir %s, want it under %s/sb", dir, rt.cfg.RunRoot)
	}
	data := filepath.Join(rt.cfg.Root, "data", filepath.Base(dir))
	state := filepath.Join(data, "state")
	if b, _ := rt.lookup(id); b == nil || b.state != state {
		t.Fatalf("state dir %+v, want %s", b, state)
	}
	if _, err := os.Lstat(filepath.Join(dir, "state")); !os.IsNotExist(err) {
		t.Errorf("a state dir in the sandbox dir too: %v", err)
	}
	if st, err := os.Lstat(filepath.Join(state, "agent.sock")); err != nil || st.Mode().Type() != os.ModeSocket {
		t.Errorf("agent socket in the state dir on disk: %v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(rt.cfg.RunRoot, "oci", "crun", id)); err != nil {
		t.Errorf("crun's state of the container is not in the run root: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(rt.cfg.Root, "sb")); len(entries) > 0 {
		t.Errorf("sandbox dirs under Root: %d", len(entries))
	}
	// The sandbox sees the disk dir as its state dir.
	if r := sh(t, ag, "echo seen > /.sbx/state/probe && ls /.sbx/state"); r.Exit.Code != 0 || !strings.Contains(string(r.Stdout), "agent.sock") {
		t.Fatalf("state dir inside: %+v", r)
	}
	if b, err := os.ReadFile(filepath.Join(state, "probe")); err != nil || string(b) != "seen\n" {
		t.Errorf("the sandbox's write to its state dir: %q, %v", b, err)
	}

	orphan := filepath.Join(rt.cfg.Root, "data", "00000000deadbeef")
	if err := os.MkdirAll(filepath.Join(orphan, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	rt2, err := New(context.Background(), rt.cfg)
	if err != nil {
		t.Fatalf("second New: %v", err)
	}
	if rt2.OldLayout() != 0 || rt2.RunRoot() != rt.cfg.RunRoot {
		t.Errorf("second runtime: old layout %d, run root %s; want 0, %s", rt2.OldLayout(), rt2.RunRoot(), rt.cfg.RunRoot)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("data dir without a sandbox dir is still there after New: %v", err)
	}
	ag2, err := rt2.Agent(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if r := sh(t, ag2, "cat /.sbx/state/probe"); r.Exit.Code != 0 || string(r.Stdout) != "seen\n" {
		t.Errorf("exec through the second runtime: %+v", r)
	}
	if err := rt2.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, data} {
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Errorf("%s after Delete: %v", d, err)
		}
	}
}

// TestOldLayoutKept: a Runtime given a run root over a Root that holds
// sandbox dirs of an older server keeps everything under Root until they
// are gone, and still runs and deletes them; the next one moves.
func TestOldLayoutKept(t *testing.T) {
	old := newRuntime(t, "crun", func(c *Config) { c.RunRoot = "" })
	id, _ := runtimetest.Create(t, harness(t, old, sandbox.Resources{}), "oldlayout")
	if dir := old.dirOf(id); filepath.Dir(dir) != filepath.Join(old.cfg.Root, "sb") {
		t.Fatalf("without a run root the sandbox dir is %s, want it under Root/sb", dir)
	}

	cfg := old.cfg
	cfg.RunRoot = old.cfg.Root + "-run2"
	t.Cleanup(func() { os.RemoveAll(cfg.RunRoot) })
	rt, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rt.OldLayout() != 1 || rt.RunRoot() != cfg.Root {
		t.Fatalf("old layout %d, run root %s; want 1, %s", rt.OldLayout(), rt.RunRoot(), cfg.Root)
	}
	ag, err := rt.Agent(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	runtimetest.MustExec(t, context.Background(), ag, "true")
	// A sandbox created meanwhile takes the old layout too.
	id2, _ := runtimetest.Create(t, harness(t, rt, sandbox.Resources{}), "oldlayout2")
	if dir := rt.dirOf(id2); filepath.Dir(dir) != filepath.Join(cfg.Root, "sb") {
		t.Errorf("new sandbox's dir %s, want it under Root/sb while old ones live", dir)
	}
	for _, x := range []string{id, id2} {
		if err := rt.Delete(context.Background(), x); err != nil {
			t.Fatal(err)
		}
	}

	rt3, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rt3.OldLayout() != 0 || rt3.RunRoot() != cfg.RunRoot {
		t.Fatalf("with the old sandboxes gone: old layout %d, run root %s; want 0, %s", rt3.OldLayout(), rt3.RunRoot(), cfg.RunRoot)
	}
	id3, _ := runtimetest.Create(t, harness(t, rt3, sandbox.Resources{}), "newlayout")
	if dir := rt3.dirOf(id3); filepath.Dir(dir) != filepath.Join(cfg.RunRoot, "sb") {
		t.Errorf("sandbox dir %s, want it under the run root", dir)
	}
	if err := rt3.Delete(context.Background(), id3); err != nil {
		t.Fatal(err)
	}
}

// TestOpenRunRoot: the run root is a tmpfs mounted once (a second open
// finds it), refused in a private namespace that lacks it, kept by a
// release while it holds sandbox dirs and unmounted by one when empty.
func TestOpenRunRoot(t *testing.T) {
	data := t.TempDir()
	dir := RunRootOf(data)
	t.Cleanup(func() {
		unix.Unmount(dir, unix.MNT_DETACH)
		os.Remove(dir)
	})
	if _, err := OpenRunRoot(data, true); err == nil {
		t.Fatal("OpenRunRoot with noMount and no tmpfs: no error")
	}
	for i := 0; i < 2; i++ {
		got, err := OpenRunRoot(data, false)
		if err != nil || got != dir {
			t.Fatalf("OpenRunRoot #%d: %s, %v; want %s", i+1, got, err, dir)
		}
	}
	if n := mountsOn(t, dir); n != 1 {
		t.Fatalf("%d mounts on %s, want 1", n, dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sb", "0123456789abcdef"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := ReleaseRunRoot(dir); err != nil {
		t.Fatal(err)
	}
	if n := mountsOn(t, dir); n != 1 {
		t.Fatalf("release with a sandbox dir left %d mounts on %s, want 1", n, dir)
	}
	if err := os.Remove(filepath.Join(dir, "sb", "0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	// The network's state and the image uses of sandboxes an older
	// server keeps under its data dir keep it too.
	for _, sub := range []string{RunRootNetwork, RunRootImageUses} {
		f := filepath.Join(dir, sub, "x")
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := ReleaseRunRoot(dir); err != nil {
			t.Fatal(err)
		}
		if n := mountsOn(t, dir); n != 1 {
			t.Fatalf("release with %s in %s left %d mounts on %s, want 1", f, sub, n, dir)
		}
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := ReleaseRunRoot(dir); err != nil {
		t.Fatal(err)
	}
	if n := mountsOn(t, dir); n != 0 {
		t.Fatalf("release of an empty run root left %d mounts on %s", n, dir)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("mount point %s after release: %v", dir, err)
	}
}

// mountsOn counts the mounts on dir in this process's mount namespace.
func mountsOn(t *testing.T, dir string) int {
	t.Helper()
	infos, err := mountinfo.GetMounts(func(in *mountinfo.Info) (skip, stop bool) {
		return in.Mountpoint != dir, false
	})
	if err != nil {
		t.Fatal(err)
	}
	return len(infos)
}

// TestReleaseImageUses: the uses of sandboxes the Runtime does not have
// (their records went with the run root at a reboot) are released; those
// of its sandboxes stay.
func TestReleaseImageUses(t *testing.T) {
	ref, _ := env(t)
	store, err := image.New(image.Config{Root: t.TempDir(), Insecure: []string{strings.Split(ref, "/")[0]}})
	if err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t, "crun", func(c *Config) { c.Images = store })
	id, _ := runtimetest.Create(t, harness(t, rt, sandbox.Resources{}), "uses")
	rec, _ := rt.boxes[id].snapshot()
	if err := store.Use(rec.Digest, "sb-gone-with-the-host"); err != nil {
		t.Fatal(err)
	}
	if n, err := rt.ReleaseImageUses(); err != nil || n != 1 {
		t.Fatalf("ReleaseImageUses: %d, %v; want 1", n, err)
	}
	if err := store.Remove(context.Background(), ref); !errors.Is(err, sandbox.ErrFailedPrecondition) || !strings.Contains(err.Error(), id) {
		t.Errorf("remove of the image a live sandbox uses: %v, want it refused naming %s", err, id)
	}
}
