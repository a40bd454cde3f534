package local

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// crun protects itself against CVE-2019-5736 (a container overwriting the
// runtime's binary through /proc/self/exe) by re-executing itself, on every
// invocation, from a sealed copy: each `crun run` and `crun delete` bind
// mounts /proc/self/exe read-only (a mount and an unmount in our mount
// namespace) or copies its 490 kB into a memfd, then execs that and pays
// its dynamic loader (libsystemd, libseccomp, libgcrypt, ...) a second
// time. crun skips all that when /proc/self/exe already is a memfd with
// exactly the seals F_SEAL_SEAL|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_WRITE,
// which nothing can write to (crun's cloned_binary.c says an admin may
// bind mount such a memfd over the binary for this reason). So we make
// that sealed copy once per binary and run crun from it: the same binary
// and the same protection, one exec and one mount-free start per call.
//
// crun is executed through a symlink named crun to the memfd
// (/proc/<our pid>/fd/<n>, which the kernel resolves at exec time), not
// through the fd path itself: a process's name (comm) is the basename of
// the path it was executed by, and the reaper's orphan sweep (proc.go)
// recognizes crun's intermediate processes by that name.

// crunLink makes dir/crun a symlink to a sealed copy of the crun binary at
// path and returns it.
func crunLink(path, dir string) (string, error) {
	target, err := sealedCopy(path)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	link := filepath.Join(dir, "crun")
	tmp := link + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return link, nil
}

// crunSeals are the seals crun checks for (cloned_binary.c CRUN_MEMFD_SEALS).
const crunSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

var (
	sealedMu sync.Mutex
	// sealed maps a binary's path to the path that execs its sealed copy.
	// The memfds stay open for the life of the process: every Runtime of
	// the same binary shares one.
	sealed = map[string]string{}
)

// sealedCopy returns a path that executes a sealed in-memory copy of the
// binary at path: /proc/<our pid>/fd/<memfd> (the descriptor itself is
// close-on-exec, so no child holds it).
func sealedCopy(path string) (string, error) {
	sealedMu.Lock()
	defer sealedMu.Unlock()
	if p, ok := sealed[path]; ok {
		return p, nil
	}
	src, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() || st.Size() > 64<<20 {
		return "", fmt.Errorf("%s is not a regular file of at most 64 MiB", path)
	}
	fd, err := unix.MemfdCreate("crun_cloned:/proc/self/exe", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return "", fmt.Errorf("memfd_create: %w", err)
	}
	mem := os.NewFile(uintptr(fd), "memfd:crun")
	if n, err := io.Copy(mem, src); err != nil || n != st.Size() {
		mem.Close()
		return "", fmt.Errorf("copy %s into a memfd: %d of %d bytes: %v", path, n, st.Size(), err)
	}
	if _, err := unix.FcntlInt(mem.Fd(), unix.F_ADD_SEALS, crunSeals); err != nil {
		mem.Close()
		return "", fmt.Errorf("seal the memfd copy of %s: %w", path, err)
	}
	// Some kernels add seals of their own (F_SEAL_EXEC under
	// vm.memfd_noexec); crun then would not trust the copy and would clone
	// itself anyway, so it is of no use.
	if seals, err := unix.FcntlInt(mem.Fd(), unix.F_GET_SEALS, 0); err != nil || seals != crunSeals {
		mem.Close()
		return "", fmt.Errorf("the memfd copy of %s has seals %#x, not %#x", path, seals, crunSeals)
	}
	p := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), mem.Fd())
	sealed[path] = p
	// mem is deliberately never closed (see sealed); keep it reachable so
	// that its finalizer does not close the descriptor.
	sealedFiles = append(sealedFiles, mem)
	return p, nil
}

// sealedFiles keeps the memfds of sealed alive.
var sealedFiles []*os.File
