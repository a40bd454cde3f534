package usermap

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/testenv"
)

// ownerThrough mounts dir idmapped through ns on a scratch dir and returns
// the host uid that dir/f then has.
func ownerThrough(t *testing.T, dir string, ns *os.File) uint32 {
	t.Helper()
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns.Fd())}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		t.Fatalf("idmap: %v", err)
	}
	target := t.TempDir()
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(target, unix.MNT_DETACH)
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(target, "f"), &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid
}

// TestMaker: the helper (the agent binary in maker mode) makes namespaces
// with the asked mapping, refuses one onto the host's low uids, and is
// started again after it died.
func TestMaker(t *testing.T) {
	testenv.Require(t, true)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "f"), 7, 7); err != nil {
		t.Fatal(err)
	}
	m := NewMaker(testenv.AgentBinary(t))
	defer m.Close()
	for _, base := range []uint32{1 << 30, 1<<30 + Size} {
		ns, err := m.Make(base)
		if err != nil {
			t.Fatal(err)
		}
		if got := ownerThrough(t, dir, ns); got != base+7 {
			t.Errorf("uid 7 through the namespace of base %d is host uid %d, want %d", base, got, base+7)
		}
		ns.Close()
	}
	if _, err := m.Make(0); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("a namespace onto host uid 0: %v, want a refusal", err)
	}
	// The helper dies: the next request starts another.
	m.mu.Lock()
	_ = m.cmd.Process.Kill()
	m.mu.Unlock()
	ns, err := m.Make(1 << 30)
	if err != nil {
		ns, err = m.Make(1 << 30) // the first one may find the dead helper
	}
	if err != nil {
		t.Fatalf("after the helper died: %v", err)
	}
	ns.Close()

	// The helper exits when its server's end of the socket closes (the
	// server died), and Close leaves no helper.
	pid := m.Pid()
	m.mu.Lock()
	m.conn.Close()
	err = m.cmd.Wait()
	m.conn, m.cmd = nil, nil
	m.mu.Unlock()
	if err != nil {
		t.Errorf("the helper, its socket closed: %v, want a clean exit", err)
	}
	if _, err := m.Make(1 << 30); err != nil {
		t.Fatal(err)
	}
	pid2 := m.Pid()
	m.Close()
	if m.Pid() != 0 {
		t.Error("Close left a helper")
	}
	for _, p := range []int{pid, pid2} {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); err == nil {
			t.Errorf("helper %d still exists", p)
		}
	}
}
