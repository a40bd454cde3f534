package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// On a v1 or hybrid host, crun makes a sandbox's cgroup in every v1
// hierarchy it finds at /sys/fs/cgroup/<controller> (nine on a hybrid
// Debian host), and each is a mkdir at create and an rmdir and a kernel
// worker's destruction at teardown. Sandboxes only use six of them:
// usedV1Controllers. trimCgroupMounts, run in sbx serve's private mount
// namespace, rebuilds /sys/fs/cgroup there with those at their usual
// places and the rest under unusedCgroupDir, where crun does not look but
// removeCgroup still does (for sandboxes an older server made in them).

// usedV1Controllers are the v1 controllers a sandbox gets a cgroup of:
// limits (cpu, memory, pids), device access (devices), Stats (cpuacct)
// and parking (freezer).
var usedV1Controllers = map[string]bool{
	"cpu": true, "cpuacct": true, "memory": true, "pids": true, "freezer": true, "devices": true,
}

// unusedCgroupDir holds, in the private mount namespace, the v1
// hierarchies no sandbox gets a cgroup in.
const unusedCgroupDir = "/sys/fs/cgroup/.sbx-unused"

// cgroupRoot is where the host mounts its cgroup hierarchies.
const cgroupRoot = "/sys/fs/cgroup"

// v1Mount is a v1 hierarchy mounted directly under cgroupRoot.
type v1Mount struct {
	name        string   // its entry under cgroupRoot
	controllers []string // from its mount options (name=... included)
}

// used says whether a sandbox gets a cgroup in the hierarchy.
func (h v1Mount) used() bool {
	for _, c := range h.controllers {
		if usedV1Controllers[c] {
			return true
		}
	}
	return false
}

// cgroupRootMounts reads this mount namespace's mounts: whether
// cgroupRoot is a mount point of its own, and the v1 hierarchies directly
// under it. ok is false for any other layout (a hierarchy elsewhere, or
// nested deeper), which trimCgroupMounts leaves alone.
func cgroupRootMounts() (hs []v1Mount, ok bool, err error) {
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, false, err
	}
	rootIsMount := false
	for _, in := range infos {
		switch mnt := in.Mountpoint; {
		case mnt == cgroupRoot:
			rootIsMount = true
		case in.FSType == "cgroup" && filepath.Dir(mnt) == cgroupRoot:
			var cs []string
			for _, o := range strings.Split(in.VFSOptions, ",") {
				if o != "rw" && o != "ro" {
					cs = append(cs, o)
				}
			}
			hs = append(hs, v1Mount{name: filepath.Base(mnt), controllers: cs})
		case in.FSType == "cgroup":
			return nil, false, nil
		}
	}
	return hs, rootIsMount, nil
}

// trimCgroupMounts rebuilds cgroupRoot in this (private) mount namespace:
// a new tmpfs with the used v1 hierarchies and the host's symlinks to them
// (cpu -> cpu,cpuacct) at their usual names, and the unused ones under
// unusedCgroupDir. It changes nothing when every hierarchy is used or the
// layout is not the usual one. Call it only in a mount namespace of our
// own, after the cgroup2 mount of a hybrid host was taken away.
func trimCgroupMounts() error {
	hs, ok, err := cgroupRootMounts()
	if err != nil || !ok {
		return err
	}
	unused := 0
	for _, h := range hs {
		if !h.used() {
			unused++
		}
	}
	if unused == 0 {
		return nil
	}
	links := map[string]string{}
	entries, err := os.ReadDir(cgroupRoot)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Type()&os.ModeSymlink != 0 {
			if t, err := os.Readlink(filepath.Join(cgroupRoot, e.Name())); err == nil && !strings.Contains(t, "/") {
				links[e.Name()] = t
			}
		}
	}
	// Detached copies of each hierarchy's mount, moved into the new tmpfs
	// once the old one is gone.
	fds := make([]int, len(hs))
	for i, h := range hs {
		fd, err := unix.OpenTree(unix.AT_FDCWD, filepath.Join(cgroupRoot, h.name), unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if errors.Is(err, unix.ENOSYS) {
			closeAll(fds[:i])
			return nil // before Linux 5.2: keep every hierarchy
		}
		if err != nil {
			closeAll(fds[:i])
			return fmt.Errorf("clone the mount of %s: %w", filepath.Join(cgroupRoot, h.name), err)
		}
		fds[i] = fd
	}
	defer closeAll(fds)
	if err := unix.Unmount(cgroupRoot, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", cgroupRoot, err)
	}
	if err := unix.Mount("cgroup", cgroupRoot, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755,size=64k"); err != nil {
		return fmt.Errorf("mount a tmpfs on %s: %w", cgroupRoot, err)
	}
	if err := os.Mkdir(unusedCgroupDir, 0o755); err != nil {
		return err
	}
	for i, h := range hs {
		dir := filepath.Join(cgroupRoot, h.name)
		if !h.used() {
			dir = filepath.Join(unusedCgroupDir, h.name)
		}
		if err := os.Mkdir(dir, 0o555); err != nil {
			return err
		}
		if err := unix.MoveMount(fds[i], "", unix.AT_FDCWD, dir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("mount %s: %w", dir, err)
		}
	}
	for name, target := range links {
		if _, err := os.Stat(filepath.Join(cgroupRoot, target)); err == nil {
			if err := os.Symlink(target, filepath.Join(cgroupRoot, name)); err != nil {
				return err
			}
		}
	}
	return unix.Mount("", cgroupRoot, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755,size=64k")
}

func closeAll(fds []int) {
	for _, fd := range fds {
		if fd > 0 {
			unix.Close(fd)
		}
	}
}
