package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
// no Config.RuntimePath uses: sbx's static build in StaticDir when
// StaticRuntime accepts it, else name looked up in PATH.
func FindRuntime(name string) (string, error) {
	p, _, err := findRuntime(name)
	return p, err
}

// findRuntime is FindRuntime that also says why a static build that is
// there was not taken (nil when it was taken or there is none).
func findRuntime(name string) (path string, skipped, err error) {
	p, why := StaticRuntime(name)
	if why == nil {
		return p, nil, nil
	}
	if errors.Is(why, fs.ErrNotExist) {
		why = nil
	}
	p, err = exec.LookPath(name)
	return p, why, err
}

// StaticRuntime returns sbx's static build of runtime name in StaticDir,
// or why it is not to be used: missing (an error matching fs.ErrNotExist),
// not safe to run as root, or built from another version than the
// installed Debian package (a security update of crun must not be
// shadowed by an old build).
func StaticRuntime(name string) (string, error) { return staticRuntimeIn(StaticDir, name) }

func staticRuntimeIn(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	if err := trustedBinary(p); err != nil {
		return "", err
	}
	stamp, err := os.ReadFile(filepath.Join(dir, name+".version"))
	if err != nil {
		return "", fmt.Errorf("%s has no version stamp (%v): run scripts/build-crun.sh", p, err)
	}
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", name).Output()
	if err != nil {
		return "", fmt.Errorf("the installed %s's version is unknown (dpkg-query: %v), so %s may be stale", name, err, p)
	}
	if built, installed := strings.TrimSpace(string(stamp)), strings.TrimSpace(string(out)); built != installed {
		return "", fmt.Errorf("%s was built from %s %s but %s is installed: run scripts/build-crun.sh", p, name, built, installed)
	}
	return p, nil
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
