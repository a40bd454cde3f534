package local

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// removeCgroup removes a sandbox's cgroup in every hierarchy: an empty one
// with one rmdir, a busy one (a sub-cgroup holding a live process) by
// killing what runs in it first; hierarchies where the sandbox has no
// cgroup are fine.
func TestRemoveCgroup(t *testing.T) {
	m, err := detectCgroups()
	if err != nil {
		t.Skip("no cgroups mounted: ", err)
	}
	parent := fmt.Sprintf("sbx-test-%08x", rand.Uint32())
	id := "sb"
	// The busy hierarchy: pids on v1, else the first one.
	busy := m.dirs[0]
	for _, d := range m.dirs {
		if strings.HasSuffix(d, "/pids") {
			busy = d
		}
	}
	var made []string
	for _, d := range m.dirs {
		if err := os.MkdirAll(filepath.Join(d, parent, id), 0o755); err != nil {
			t.Fatalf("make a test cgroup: %v", err)
		}
		made = append(made, filepath.Join(d, parent))
	}
	t.Cleanup(func() {
		for _, d := range made {
			os.Remove(filepath.Join(d, id, "sub"))
			os.Remove(filepath.Join(d, id))
			os.Remove(d)
		}
	})
	// One hierarchy without the sandbox's cgroup.
	if len(m.dirs) > 1 && m.dirs[len(m.dirs)-1] != busy {
		os.Remove(filepath.Join(m.dirs[len(m.dirs)-1], parent, id))
	}
	sub := filepath.Join(busy, parent, id, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	if err := os.WriteFile(filepath.Join(sub, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Skipf("cannot move a process into %s: %v", sub, err)
	}
	if err := m.removeCgroup(parent, id); err != nil {
		t.Fatalf("removeCgroup: %v", err)
	}
	for _, d := range m.dirs {
		if _, err := os.Stat(filepath.Join(d, parent, id)); !os.IsNotExist(err) {
			t.Errorf("%s still exists (%v)", filepath.Join(d, parent, id), err)
		}
	}
	if err := <-waited; err == nil {
		t.Error("the process in the busy cgroup was not killed")
	}
	if err := m.removeCgroup(parent, id); err != nil {
		t.Errorf("removeCgroup of a removed cgroup: %v", err)
	}
}

// crunOnlyEnv makes the test binary enter the mount namespace sbx serve
// makes for crun alone (TestMain).
const crunOnlyEnv = "SBX_TEST_CRUN_ONLY"

// In sbx serve's private mount namespace on a hybrid host when crun is its
// runtime, the v1 hierarchies a sandbox uses are at /sys/fs/cgroup/<name>
// and the others under unusedCgroupDir, so crun makes a sandbox's cgroup
// in the used ones only; removeCgroup still sees all of them
// (TestRemoveCgroup). The test binary's own namespace keeps every
// hierarchy (runc and runsc want them), so the test runs again in a copy
// of it where TestMain trims them as sbx serve does.
func TestTrimmedCgroupMounts(t *testing.T) {
	m, err := detectCgroups()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(mountNSEnv) != "1" {
		t.Skipf("a %s host: sbx serve makes no private mount namespace, and crun uses every hierarchy there is", m.layout)
	}
	if os.Getenv(crunOnlyEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestTrimmedCgroupMounts$", "-test.v", "-test.count", "1")
		cmd.Env = append(os.Environ(), crunOnlyEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestTrimmedCgroupMounts") {
			t.Fatalf("in a crun-only namespace: %v\n%s", err, out)
		}
		return
	}
	var used, unused []string
	for _, d := range m.dirs {
		switch filepath.Dir(d) {
		case cgroupRoot:
			used = append(used, d)
		case unusedCgroupDir:
			unused = append(unused, d)
		default:
			t.Errorf("hierarchy at %s: want it under %s or %s", d, cgroupRoot, unusedCgroupDir)
		}
	}
	hs, _, err := cgroupRootMounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if !h.used() {
			t.Errorf("%s (%v) is still at its usual place", h.name, h.controllers)
		}
	}
	for _, c := range []string{"memory", "pids", "freezer", "cpuacct", "cpu", "devices"} {
		if fi, err := os.Stat(filepath.Join(cgroupRoot, c)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", filepath.Join(cgroupRoot, c), err)
		}
	}
	t.Logf("used %v, unused %v", used, unused)

	rt := newRuntime(t, "crun")
	ref, _ := env(t)
	id := runtimetest.NewID("cgtrim")
	if _, err := rt.Create(context.Background(), sandbox.Spec{ID: id, Image: ref}); err != nil {
		t.Fatal(err)
	}
	for _, d := range used {
		if _, err := os.Stat(filepath.Join(d, rt.cfg.CgroupParent, id)); err != nil {
			t.Errorf("the sandbox has no cgroup in %s: %v", d, err)
		}
	}
	for _, d := range unused {
		if _, err := os.Stat(filepath.Join(d, rt.cfg.CgroupParent, id)); !os.IsNotExist(err) {
			t.Errorf("the sandbox has a cgroup in the unused %s (%v)", d, err)
		}
	}
	if err := rt.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	for _, d := range used {
		if _, err := os.Stat(filepath.Join(d, rt.cfg.CgroupParent, id)); !os.IsNotExist(err) {
			t.Errorf("%s still exists after Delete (%v)", filepath.Join(d, rt.cfg.CgroupParent, id), err)
		}
	}
}
