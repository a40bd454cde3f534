package local

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// StaticDir is where sbx's own builds of OCI runtimes live:
// scripts/build-crun.sh puts a static crun there, built from Debian's
// source of the installed crun. Debian's crun loads ten shared libraries
// (libsystemd and its compression and crypto libraries among them) at every
// `crun run`; on a VM, where each page a new process touches costs a fault,
// that was about 10 ms of a cold create (docs/BENCHMARKS.md).
const StaticDir = "/usr/local/libexec/sbx"

// FindRuntime returns the binary of OCI runtime name that a Runtime with
// no Config.RuntimePath uses: sbx's static build in StaticDir when it is
// there and safe to run as root, else name looked up in PATH.
func FindRuntime(name string) (string, error) {
	if p := filepath.Join(StaticDir, name); trustedBinary(p) == nil {
		return p, nil
	}
	return exec.LookPath(name)
}

// trustedBinary says why path must not be run as root, or nil: it must be
// a regular executable file owned by root, and neither it nor any dir
// above it writable by anyone else.
func trustedBinary(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable regular file", path)
	}
	for p := path; ; p = filepath.Dir(p) {
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok || sys.Uid != 0 {
			return fmt.Errorf("%s is not owned by root", p)
		}
		if st.Mode().Perm()&0o022 != 0 && st.Mode()&os.ModeSticky == 0 {
			return fmt.Errorf("%s is writable by others than root", p)
		}
		if p == "/" {
			return nil
		}
	}
}
