package local

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/testenv"
)

// TestIDMappedOverlay mounts an overlay of two idmapped layers: their files
// keep their on-disk owners shifted into the range, and nothing on disk
// changes.
// Both ways to build it: "lowerdir+" (Linux 6.8) and, as kernels before
// it need, one lowerdir= option.
func TestIDMappedOverlay(t *testing.T) {
	testenv.Require(t, true)
	for _, way := range []struct {
		name      string
		fds, plus bool
	}{{"fds", true, true}, {"attached/lowerdir+", false, true}, {"attached/lowerdir", false, false}} {
		t.Run(way.name, func(t *testing.T) {
			defer func(fds, plus bool) { layerFDs.Store(fds); lowerdirPlus = plus }(layerFDs.Load(), lowerdirPlus)
			layerFDs.Store(way.fds)
			lowerdirPlus = way.plus
			testIDMappedOverlay(t)
			if way.fds && !layerFDs.Load() {
				if kernelAtLeast(t, 6, 15) {
					t.Errorf("overlayfs of Linux 6.15 or later refused the detached idmapped layers by descriptor; the attached path ran")
				} else {
					t.Logf("overlayfs here (before 6.15) takes no detached layers by descriptor; the attached path ran")
				}
			}
		})
	}
}

func testIDMappedOverlay(t *testing.T) {
	dir := t.TempDir()
	low1, low2 := filepath.Join(dir, "l1"), filepath.Join(dir, "l2")
	upper, work, target := filepath.Join(dir, "u"), filepath.Join(dir, "w"), filepath.Join(dir, "m")
	for _, d := range []string{low1, low2, upper, work, target} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, uid int) {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(low1, "a"), 1000)
	write(filepath.Join(low2, "b"), 0)
	ids, err := newIDRanges(testenv.AgentBinary(t), filepath.Join(dir, "claims"), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer ids.close()
	base, err := ids.alloc(dir)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := ids.userns(base)
	if err != nil {
		t.Fatal(err)
	}
	if err := chownToSandbox(base, upper); err != nil {
		t.Fatal(err)
	}
	if err := mountOverlayIDMapped([]string{low1, low2}, upper, work, target, filepath.Join(dir, "lower"), false, ns); err != nil {
		t.Fatal(err)
	}
	defer unmount(target)
	owner := func(p string) uint32 {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Uid
	}
	if got := owner(filepath.Join(target, "a")); got != base+1000 {
		t.Errorf("a is owned by %d through the overlay, want %d", got, base+1000)
	}
	if got := owner(filepath.Join(target, "b")); got != base {
		t.Errorf("b is owned by %d through the overlay, want %d", got, base)
	}
	if got := owner(target); got != base {
		t.Errorf("the overlay's root is owned by %d, want %d", got, base)
	}
	if got := owner(filepath.Join(low1, "a")); got != 1000 {
		t.Errorf("the layer's file is owned by %d on disk now, want 1000", got)
	}
}

func TestIDRanges(t *testing.T) {
	claims := t.TempDir()
	a, err := newIDRanges("/bin/true", claims, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	holders := t.TempDir()
	dir := func(name string) string {
		d := filepath.Join(holders, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		return d
	}
	var bases []uint32
	for _, h := range []string{"a", "b", "c"} {
		base, err := a.alloc(dir(h))
		if err != nil {
			t.Fatal(err)
		}
		bases = append(bases, base)
	}
	for i, b := range bases {
		if b != usernsBase+uint32(i)*usernsSize {
			t.Errorf("slot %d starts at %d, want %d", i, b, usernsBase+uint32(i)*usernsSize)
		}
	}
	_, err = a.alloc(dir("d"))
	if !errors.Is(err, sandbox.ErrResourceExhausted) || !strings.Contains(err.Error(), "all 3 ") {
		t.Errorf("alloc past the limit: %v, want ResourceExhausted naming the limit 3", err)
	}
	if err := a.free(dir("x"), bases[1]); err != nil { // not its holder: nothing happens
		t.Fatal(err)
	}
	if _, err := a.alloc(dir("d")); err == nil {
		t.Error("free by a sandbox that does not hold the slot freed it")
	}
	if err := a.free(dir("b"), bases[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(claims, "1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the claim of a freed slot is still there: %v", err)
	}
	if got, err := a.alloc(dir("e")); err != nil || got != bases[1] {
		t.Errorf("alloc after free = %d, %v; want the freed %d", got, err, bases[1])
	}
	if err := a.claim(dir("z"), bases[0]); err == nil {
		t.Error("claim of a held slot by another sandbox succeeded")
	}
	if err := a.claim(dir("a"), bases[0]); err != nil {
		t.Errorf("claim by its holder: %v", err)
	}
	if err := a.claim(dir("z"), bases[0]+1); err == nil {
		t.Error("claim of a base that starts no slot succeeded")
	}
	if a.inUse() != 3 {
		t.Errorf("%d slots in use, want 3", a.inUse())
	}

	// Another server on the host skips the slots live sandboxes hold, and
	// takes over one whose sandbox dir is gone.
	other, err := newIDRanges("/bin/true", claims, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer other.close()
	if got, err := other.alloc(dir("f")); err != nil || got != baseOf(3) {
		t.Errorf("another server's alloc = %d, %v; want the first unclaimed slot's %d", got, err, baseOf(3))
	}
	if err := other.claim(dir("g"), bases[0]); err == nil {
		t.Error("another server's sandbox claimed a slot a live sandbox holds")
	}
	if err := os.Remove(dir("c")); err != nil {
		t.Fatal(err)
	}
	if got, err := other.alloc(dir("h")); err != nil || got != bases[2] {
		t.Errorf("alloc with a stale claim = %d, %v; want the stale slot's %d", got, err, bases[2])
	}

	// The last slot ends below the kernel's invalid uid 2^32-1.
	if last := uint64(baseOf(MaxUserNamespaces-1)) + usernsSize - 1; last >= 1<<32-1 {
		t.Errorf("the last slot ends at uid %d, which reaches 2^32-1", last)
	}
	if _, ok := slotOf(baseOf(MaxUserNamespaces)); ok {
		t.Error("slotOf accepts a slot past MaxUserNamespaces")
	}
}

// ownedImage pushes busybox plus a layer with a user app (1000:1000) who
// owns /home/app and a 0600 file in it, once per test binary.
var ownedImage = sync.OnceValues(func() (string, error) {
	img, err := testenv.NewBusyboxImage()
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	passwd := "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	group := "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n"
	for _, h := range []struct {
		hdr  tar.Header
		body string
	}{
		{tar.Header{Name: "etc/passwd", Mode: 0o644}, passwd},
		{tar.Header{Name: "etc/group", Mode: 0o644}, group},
		{tar.Header{Name: "home/app/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 1000, Gid: 1000}, ""},
		{tar.Header{Name: "home/app/owned", Mode: 0o600, Uid: 1000, Gid: 1000}, "app's\n"},
	} {
		hdr := h.hdr
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(h.body))
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			return "", err
		}
		if _, err := tw.Write([]byte(h.body)); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	b := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return "", err
	}
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer})
	if err != nil {
		return "", err
	}
	host, _, _ := strings.Cut(fixture.busybox, "/")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return testenv.Push(ctx, host, "library/owned:latest", img)
})

// statusIDs returns the Uid and Gid lines' four ids of a host process.
func statusIDs(t *testing.T, pid int) (uids, gids []string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			uids = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(line, "Gid:"); ok {
			gids = strings.Fields(v)
		}
	}
	return uids, gids
}

// descendant returns a host process below pid whose command is comm.
func descendant(pid int, comm string) int {
	// Each thread lists the children it forked.
	var kids []string
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		kids = append(kids, strings.Fields(string(b))...)
	}
	for _, f := range kids {
		child, _ := strconv.Atoi(f)
		c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", child))
		if strings.TrimSpace(string(c)) == comm {
			return child
		}
		if d := descendant(child, comm); d != 0 {
			return d
		}
	}
	return 0
}

func allEqual(ids []string, want uint32) bool {
	if len(ids) != 4 {
		return false
	}
	for _, id := range ids {
		if id != strconv.FormatUint(uint64(want), 10) {
			return false
		}
	}
	return true
}

// TestUserNamespace checks, under crun and runc, that a sandbox's root is
// an unprivileged host uid of a range of its own, that image files keep
// their owners as the sandbox sees them, and that host files exposed to
// it stay out of its reach.
func TestUserNamespace(t *testing.T) {
	eachRuntime(t, []string{"crun", "runc"}, testUserNamespace)
}

func testUserNamespace(t *testing.T, name string) {
	env(t)
	ref, err := ownedImage()
	if err != nil {
		t.Fatalf("test image: %v", err)
	}
	rt := newRuntime(t, name)
	if on, why := rt.UserNamespaces(); !on {
		t.Fatalf("the runtime runs without user namespaces: %v", why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var ids []string
	var recs []record
	for range 2 {
		id := runtimetest.NewID("userns")
		if _, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: ref}); err != nil {
			t.Fatal(err)
		}
		if err := rt.Start(ctx, id, sandbox.StartSpec{}); err != nil {
			t.Fatal(err)
		}
		b, _ := rt.lookup(id)
		rec, _ := b.snapshot()
		ids, recs = append(ids, id), append(recs, rec)
	}
	a, b := recs[0], recs[1]
	if a.UIDBase < usernsBase || b.UIDBase < usernsBase {
		t.Fatalf("uid bases %d and %d, want both at least %d", a.UIDBase, b.UIDBase, usernsBase)
	}
	if d := int64(a.UIDBase) - int64(b.UIDBase); d > -usernsSize && d < usernsSize {
		t.Errorf("the two sandboxes' ranges at %d and %d overlap", a.UIDBase, b.UIDBase)
	}
	for _, rec := range recs {
		if u, g := statusIDs(t, rec.PID); !allEqual(u, rec.UIDBase) || !allEqual(g, rec.UIDBase) {
			t.Errorf("the agent (host pid %d) runs as uids %v gids %v, want all %d", rec.PID, u, g, rec.UIDBase)
		}
	}

	ag, err := rt.Agent(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	dir := rt.dirOf(ids[0])
	want := fmt.Sprintf("0 %d %d", a.UIDBase, usernsSize)
	if r := sh(t, ag, "cat /proc/self/uid_map /proc/self/gid_map"); strings.Count(strings.Join(strings.Fields(r.Stdout), " "), want) != 2 {
		t.Errorf("uid_map and gid_map inside say %q, want %q twice", r.Stdout, want)
	}
	if r := sh(t, ag, "id -u; stat -c '%u:%g %a' /home/app /home/app/owned; cat /home/app/owned"); r.Stdout != "0\n1000:1000 750\n1000:1000 600\napp's\n" {
		t.Errorf("image files as sandbox root sees them: %q (stderr %q), want app's files 1000:1000, readable", r.Stdout, r.Stderr)
	}

	// A non-root user of the image, seen from the host in the range.
	p, err := ag.Exec(ctx, sandbox.ExecSpec{Command: []string{"sh", "-c", "id -u; id -g; cat /home/app/owned; exec sleep 60"}, User: "app"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var host int
	for i := 0; i < 500 && host == 0; i++ {
		host = descendant(a.PID, "sleep")
		sleepBackoff(i)
	}
	if host == 0 {
		t.Fatal("the exec'd sleep does not show among the agent's host descendants")
	}
	if u, g := statusIDs(t, host); !allEqual(u, a.UIDBase+1000) || !allEqual(g, a.UIDBase+1000) {
		t.Errorf("user app's process (host pid %d) runs as uids %v gids %v, want all %d", host, u, g, a.UIDBase+1000)
	}
	if r := sh(t, ag, "pkill sleep; true"); r.Exit.Code != 0 {
		t.Errorf("pkill: %+v", r)
	}

	// A file written through the agent: the sandbox's root's inside, base's on the host.
	if err := ag.WriteFile(ctx, "/tmp/written", 0o640, strings.NewReader("hi")); err != nil {
		t.Fatal(err)
	}
	if r := sh(t, ag, "stat -c '%u:%g' /tmp/written"); r.Stdout != "0:0\n" {
		t.Errorf("a written file is %q inside, want 0:0", r.Stdout)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(rt.dataOf(dir), "upper", "tmp", "written"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != a.UIDBase || st.Gid != a.UIDBase {
		t.Errorf("a written file is %d:%d on the host, want %d:%d", st.Uid, st.Gid, a.UIDBase, a.UIDBase)
	}
	// Files the host wrote for the sandbox are its root's.
	if r := sh(t, ag, "stat -c '%u:%g' /etc/hosts /etc/hostname /.sbx/state && echo 127.0.0.2 extra >> /etc/hosts"); r.Stdout != "0:0\n0:0\n0:0\n" || r.Exit.Code != 0 {
		t.Errorf("the host-written files inside: %q (stderr %q, exit %d), want owned by 0:0 and /etc/hosts writable", r.Stdout, r.Stderr, r.Exit.Code)
	}

	// Escape-style: a host root file exposed in the sandbox (its state dir
	// is a host dir) is out of the sandbox root's reach, for all its
	// capabilities: host uid 0 is not mapped in its namespace.
	hostDir := filepath.Join(rt.stateOf(dir), "host")
	if err := os.Mkdir(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(hostDir, "secret")
	if err := os.WriteFile(secret, []byte("top secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := sh(t, ag, `f=/.sbx/state/host/secret; stat -c '%u' $f; cat $f; chmod 666 $f; chown 0 $f; echo x >> $f; rm -f $f; touch /.sbx/state/host/new; ls /.sbx/state/host`)
	if r.Stdout != "65534\nsecret\n" {
		t.Errorf("a host root file inside: stdout %q, want its owner shown as 65534 (nobody) and it alone listed", r.Stdout)
	}
	for _, deny := range []string{"cat:", "chmod:", "chown:", "rm:", "touch:"} {
		if !strings.Contains(r.Stderr, deny) {
			t.Errorf("%s on a host root file inside did not fail: stderr %q", strings.TrimSuffix(deny, ":"), r.Stderr)
		}
	}
	if got, err := os.ReadFile(secret); err != nil || string(got) != "top secret\n" {
		t.Errorf("the host root file after the sandbox tried to change it: %q, %v", got, err)
	}
	// /sys is the sandbox's own sysfs (its network namespace's devices),
	// not the host's.
	if r := sh(t, ag, "ls /sys/class/net"); r.Stdout != "lo\n" {
		t.Errorf("/sys/class/net inside lists %q, want only lo (the sandbox has no network)", r.Stdout)
	}
	// Nor can the sandbox make a user namespace of its own.
	if r := sh(t, ag, "unshare -U true"); r.Exit.Code == 0 {
		t.Error("unshare -U succeeded inside the sandbox")
	}

	// Deleting frees the ranges, here and host-wide.
	for _, id := range ids {
		if err := rt.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if n := rt.ids.inUse(); n != 0 {
		t.Errorf("%d uid ranges in use after every sandbox was deleted", n)
	}
	for _, rec := range recs {
		s, _ := slotOf(rec.UIDBase)
		if holder, err := os.Readlink(rt.ids.claimPath(s)); err == nil && holder == rt.dirOf(rec.ID) {
			t.Errorf("the host-wide claim of uid range %d still names deleted sandbox %s", rec.UIDBase, rec.ID)
		}
	}
}

// TestUserNamespaceRecovery checks that a restarted runtime keeps the
// ranges of live sandboxes and hands out others.
func TestUserNamespaceRecovery(t *testing.T) {
	ref, _ := env(t)
	rt := newRuntime(t, "crun")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id := runtimetest.NewID("usernsr")
	if _, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: ref}); err != nil {
		t.Fatal(err)
	}
	b, _ := rt.lookup(id)
	before, _ := b.snapshot()
	rt2, err := New(ctx, rt.cfg)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := rt2.lookup(id)
	if err != nil {
		t.Fatal(err)
	}
	if rec, _ := b2.snapshot(); rec.UIDBase != before.UIDBase || rec.Phase != phaseCreated {
		t.Fatalf("after restart the sandbox has phase %s uid base %d, want created at %d", rec.Phase, rec.UIDBase, before.UIDBase)
	}
	id2 := runtimetest.NewID("usernsr")
	if _, err := rt2.Create(ctx, sandbox.Spec{ID: id2, Image: ref}); err != nil {
		t.Fatal(err)
	}
	b3, _ := rt2.lookup(id2)
	if rec, _ := b3.snapshot(); rec.UIDBase == before.UIDBase || rec.UIDBase == 0 {
		t.Errorf("a sandbox made after the restart got uid base %d; the live one holds %d", rec.UIDBase, before.UIDBase)
	}
	for _, id := range []string{id, id2} {
		if err := rt2.Delete(ctx, id); err != nil {
			t.Error(err)
		}
	}
	if n := rt2.ids.inUse(); n != 0 {
		t.Errorf("%d uid ranges in use after Delete", n)
	}
}

func TestCheckIDFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	okSub := write("subuid", "alice:100000:65536\nbob:165536:65536\n")
	okDB := write("passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
	if err := checkIDFiles(MaxUserNamespaces, []string{okSub, filepath.Join(dir, "missing")}, []string{okDB}); err != nil {
		t.Errorf("Debian's default ranges: %v", err)
	}
	// A subordinate range that ends inside the first slot.
	badSub := write("subuid2", fmt.Sprintf("carol:%d:%d\n", usernsBase-10, 11))
	if err := checkIDFiles(1, []string{badSub}, nil); err == nil || !strings.Contains(err.Error(), "carol") {
		t.Errorf("a subordinate range reaching slot 0: %v, want an error naming carol", err)
	}
	// A user past the slots in use is fine; one inside is not.
	past := write("passwd2", fmt.Sprintf("dave:x:%d:1::/:/bin/sh\n", baseOf(2)))
	if err := checkIDFiles(2, nil, []string{past}); err != nil {
		t.Errorf("a user past the ranges: %v", err)
	}
	if err := checkIDFiles(3, nil, []string{past}); err == nil || !strings.Contains(err.Error(), "dave") {
		t.Errorf("a user inside the ranges: %v, want an error naming dave", err)
	}
}

// TestUserNSModes checks the modes: off gives no user namespace, runsc
// never gets one, and a root the sandboxes' uids cannot reach makes auto
// fall back and on refuse.
func TestUserNSModes(t *testing.T) {
	env(t)
	closed := t.TempDir() // 0700: no other uid may search it
	for _, mode := range []string{UserNSAuto, UserNSOn} {
		cfg := newRuntime(t, "crun").cfg
		cfg.Root, cfg.UserNS = filepath.Join(closed, mode), mode
		rt, err := New(context.Background(), cfg)
		switch {
		case mode == UserNSOn && (err == nil || !errors.Is(err, sandbox.ErrFailedPrecondition) || !strings.Contains(err.Error(), closed)):
			t.Errorf("UserNSOn under a closed dir: %v, want FailedPrecondition naming %s", err, closed)
		case mode == UserNSAuto && err != nil:
			t.Errorf("UserNSAuto under a closed dir: %v", err)
		case mode == UserNSAuto:
			if on, why := rt.UserNamespaces(); on || why == nil {
				t.Errorf("UserNSAuto under a closed dir: user namespaces %v (%v), want off with a reason", on, why)
			}
		}
	}
	if on, _ := newRuntime(t, "crun", func(c *Config) { c.UserNS = UserNSOff }).UserNamespaces(); on {
		t.Error("UserNSOff: sandboxes get user namespaces")
	}
	if on, _ := newRuntime(t, "runsc", func(c *Config) { c.UserNS = UserNSOn }).UserNamespaces(); on {
		t.Error("runsc: sandboxes get user namespaces from us")
	}
	if on, why := newRuntime(t, "runc", func(c *Config) { c.UserNS = UserNSOn }).UserNamespaces(); !on {
		t.Errorf("UserNSOn: no user namespaces: %v", why)
	}
}

// BenchmarkUserNSLifeCycle is BenchmarkLifeCycle's crun life with and
// without user namespaces, alternating, for what they cost.
func BenchmarkUserNSLifeCycle(b *testing.B) {
	for _, mode := range []string{UserNSOff, UserNSOn} {
		b.Run(mode, func(b *testing.B) {
			benchLifeCycle(b, newRuntime(b, "crun", func(c *Config) { c.UserNS = mode }))
		})
	}
}

// kernelAtLeast says whether the running kernel is major.minor or later.
func kernelAtLeast(t *testing.T, major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var ma, mi int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); err != nil {
		t.Fatalf("kernel release %q: %v", unix.ByteSliceToString(u.Release[:]), err)
	}
	return ma > major || (ma == major && mi >= minor)
}
