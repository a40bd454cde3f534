package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// On a hybrid host the child of EnterMountNamespace unmounts the cgroup2
// hierarchy (/sys/fs/cgroup/unified) so that crun 1.8 runs. That leaves a
// plain directory of the tmpfs that holds the host's cgroup mount points,
// and crun, which still finds the cgroup2 line ("0::/...") in
// /proc/self/cgroup, makes <dir>/<parent>/<id> there for every container
// and writes its pid into a regular file cgroup.procs. Nothing is a cgroup
// there, so no rmdir removes it: each sandbox left a directory and a 4 KiB
// file in the host's memory, hidden under the cgroup2 mount from every
// other process and kept until the host reboots (1.4 GiB of shmem and 1.8
// GiB of slab after 344,000 sandboxes on the test machine).
//
// So the child mounts a tmpfs of its own there (the stub): crun's files land
// in it, removeCgroup removes each sandbox's with its cgroups, and whatever
// is left goes with the server's mount namespace. crun needs the writes to
// succeed: a read-only stub makes its mkdir fail with EROFS, and crun 1.8
// then refuses to start the container.

// cgroup2StubSource names the stub's tmpfs in /proc/self/mountinfo, which is
// how detectCgroups finds it.
const cgroup2StubSource = "sbx-cgroup2-stub"

// hostCgroup2Dir is the host's directory under the cgroup2 mount point,
// opened in the child before the stub hides it, for sweepHostCgroup2.
var hostCgroup2Dir struct {
	sync.Mutex
	f *os.File
}

// mountCgroup2Stub replaces the unmounted cgroup2 hierarchy at dir with the
// stub, keeping a descriptor of the host's directory underneath.
func mountCgroup2Stub(dir string) error {
	if f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0); err == nil {
		hostCgroup2Dir.Lock()
		hostCgroup2Dir.f = f
		hostCgroup2Dir.Unlock()
	}
	if err := unix.Mount(cgroup2StubSource, dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755"); err != nil {
		return fmt.Errorf("mount a tmpfs on %s in the private mount namespace: %w", dir, err)
	}
	return nil
}

// removeStubDir removes what crun made for one container in the stub: the
// directory and the files it wrote there (cgroup.procs). A missing dir is
// fine.
func removeStubDir(dir string) error {
	// The common case: crun wrote cgroup.procs only.
	if err := unix.Unlink(filepath.Join(dir, "cgroup.procs")); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	err := unix.Rmdir(dir)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.ENOTEMPTY) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// SweepHostCgroup2 removes what crun left, under earlier versions of sbx,
// in the host's directory under the cgroup2 mount point (see above): every
// directory, one or two levels down, whose only entry is a regular file
// cgroup.procs. It touches nothing unless that directory is on a tmpfs,
// and nothing that does not look exactly like crun's leftovers. It returns
// how many it removed; without a stub (not the child of
// EnterMountNamespace on a hybrid host) it does nothing. It may take
// seconds after a long uptime; run it in the background.
func SweepHostCgroup2() (int, error) {
	hostCgroup2Dir.Lock()
	f := hostCgroup2Dir.f
	hostCgroup2Dir.f = nil
	hostCgroup2Dir.Unlock()
	if f == nil {
		return 0, nil
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return 0, fmt.Errorf("statfs the host's %s: %w", f.Name(), err)
	}
	if st.Type != unix.TMPFS_MAGIC {
		return 0, nil
	}
	return sweepLeftovers(int(f.Fd()), 2)
}

// sweepLeftovers removes, under the directory dirfd, each subdirectory
// whose only entry is a regular file cgroup.procs, and looks depth levels
// down for more.
func sweepLeftovers(dirfd, depth int) (int, error) {
	names, err := readDirNames(dirfd)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, name := range names {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // not a directory, or gone
		}
		inner, err := readDirNames(fd)
		if err == nil && len(inner) == 1 && inner[0] == "cgroup.procs" && isRegularAt(fd, "cgroup.procs") {
			if err := unix.Unlinkat(fd, "cgroup.procs", 0); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, err)
			} else if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err == nil {
				n++
			}
			unix.Close(fd)
			continue
		}
		if err == nil && depth > 1 {
			m, err := sweepLeftovers(fd, depth-1)
			n += m
			if err != nil {
				errs = append(errs, err)
			}
		}
		unix.Close(fd)
	}
	return n, errors.Join(errs...)
}

func isRegularAt(dirfd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG
}

// readDirNames lists the directory open at fd without consuming fd's
// offset for later use (it reads through a duplicate).
func readDirNames(fd int) ([]string, error) {
	dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), ".")
	defer f.Close()
	var names []string
	for {
		batch, err := f.Readdirnames(4096)
		names = append(names, batch...)
		if err != nil || len(batch) == 0 {
			break
		}
	}
	return names, nil
}
