package local

import (
	"debug/elf"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/internal/testenv"
)

// TestStaticCrun: scripts/build-crun.sh installed a static crun of the
// installed Debian version, and a Runtime without a RuntimePath runs it.
// Every other test of this package that makes a container then runs it
// too. Not installed: a failure in CI, where .ci/run builds it.
func TestStaticCrun(t *testing.T) {
	testenv.Require(t, true, "crun")
	static := filepath.Join(StaticDir, "crun")
	if _, err := os.Stat(static); err != nil {
		if testenv.InCI() {
			t.Fatalf("prerequisite missing: %v (scripts/deps.sh runs scripts/build-crun.sh)", err)
		}
		t.Skipf("prerequisite missing: %v: run scripts/build-crun.sh", err)
	}
	f, err := elf.Open(static)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s is dynamically linked (program header %v)", static, p.Type)
		}
	}
	got, err := FindRuntime("crun")
	if err != nil || got != static {
		t.Errorf("FindRuntime(crun) = %q, %v; want %s", got, err, static)
	}
	version := func(bin string) string {
		out, err := exec.Command(bin, "--version").Output()
		if err != nil {
			t.Fatalf("%s --version: %v", bin, err)
		}
		return strings.SplitN(string(out), "\n", 2)[0]
	}
	system, err := exec.LookPath("crun")
	if err != nil {
		t.Fatal(err)
	}
	if s, d := version(static), version(system); s != d {
		t.Errorf("static crun reports %q, Debian's %q: run scripts/build-crun.sh again after a crun upgrade", s, d)
	}
	// Features sbx needs (seccomp, capabilities, the OCI spec's parser).
	out, err := exec.Command(static, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"+SECCOMP", "+CAP", "+YAJL"} {
		if !strings.Contains(string(out), f) {
			t.Errorf("static crun lacks %s: %s", f, out)
		}
	}
}

// TestTrustedBinary: FindRuntime runs only a binary that no one but root
// could have put or changed there.
func TestTrustedBinary(t *testing.T) {
	testenv.Require(t, true)
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := trustedBinary(write("ok", 0o755)); err != nil {
		t.Errorf("root-owned 0755 file: %v", err)
	}
	for name, path := range map[string]string{
		"not executable":    write("noexec", 0o644),
		"writable by group": write("gw", 0o775),
		"writable by all":   write("ow", 0o757),
		"missing":           filepath.Join(dir, "missing"),
	} {
		if err := trustedBinary(path); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	other := write("other", 0o755)
	if err := os.Chown(other, 1000, 0); err != nil {
		t.Fatal(err)
	}
	if err := trustedBinary(other); err == nil {
		t.Error("file owned by uid 1000: accepted")
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "ok"), link); err != nil {
		t.Fatal(err)
	}
	if err := trustedBinary(link); err == nil {
		t.Error("symlink: accepted")
	}
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	inOpen := filepath.Join(open, "crun")
	if err := os.WriteFile(inOpen, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := trustedBinary(inOpen); err == nil {
		t.Error("file in a world-writable dir: accepted")
	}
}

// TestStaticRuntimeVersion: a static build whose version stamp is not the
// installed package's version is not used (a crun security update would
// otherwise be shadowed by the old build).
func TestStaticRuntimeVersion(t *testing.T) {
	testenv.Require(t, true, "crun", "dpkg-query")
	installed, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "crun").Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "crun")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := staticRuntimeIn(dir, "crun"); err == nil || !strings.Contains(err.Error(), "no version stamp") {
		t.Errorf("no stamp: %v", err)
	}
	stamp := filepath.Join(dir, "crun.version")
	os.WriteFile(stamp, []byte("0.1-1\n"), 0o644)
	if _, err := staticRuntimeIn(dir, "crun"); err == nil || !strings.Contains(err.Error(), "run scripts/build-crun.sh") {
		t.Errorf("stale stamp: %v", err)
	}
	os.WriteFile(stamp, append(installed, '\n'), 0o644)
	if p, err := staticRuntimeIn(dir, "crun"); err != nil || p != bin {
		t.Errorf("current stamp: %q, %v", p, err)
	}
	if _, err := staticRuntimeIn(dir, "runc"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing build: %v, want fs.ErrNotExist", err)
	}
}
