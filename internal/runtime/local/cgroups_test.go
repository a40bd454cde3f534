package local

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
