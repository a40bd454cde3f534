package agent

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
)

// TestWorkloadThread: with the tasks file of a v1 pids cgroup, the agent's
// children are born in that cgroup (and the agent's other threads are
// not); a tasks file it cannot write leaves it making spare threads
// instead of failing.
func TestWorkloadThread(t *testing.T) {
	root := "/sys/fs/cgroup/pids"
	if _, err := os.Stat(filepath.Join(root, "pids.max")); err != nil {
		// pids.max exists in every non-root v1 pids cgroup; the root has
		// cgroup.procs only.
		if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
			t.Skipf("no v1 pids hierarchy at %s: the workload cgroup is for v1 hosts", root)
		}
	}
	parent := filepath.Join(root, runtimetest.NewID("sbx-agent-test"))
	w := filepath.Join(parent, "w")
	if err := os.MkdirAll(w, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The workload thread ends after its goroutine; then w is empty.
		for i := 0; i < 100 && os.Remove(w) != nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if err := os.Remove(parent); err != nil {
			t.Errorf("the test's cgroups are left: %v", err)
		}
	})
	f, err := os.OpenFile(filepath.Join(w, "tasks"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	wl, err := startWorkload(f)
	if err != nil {
		t.Fatal(err)
	}
	defer wl.close()
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := wl.forkExec("/bin/sh", []string{"sh", "-c", "cat /proc/self/cgroup"},
		&syscall.ProcAttr{Files: []uintptr{0, wr.Fd(), 2}})
	wr.Close()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 4096)
	n, _ := r.Read(out)
	var ws syscall.WaitStatus
	syscall.Wait4(pid, &ws, 0, nil)
	want := ":pids:/" + filepath.Base(parent) + "/w\n"
	if !strings.Contains(string(out[:n]), want) {
		t.Errorf("the child's cgroups:\n%s\nwant a line ending %q", out[:n], want)
	}
	own, _ := os.ReadFile("/proc/self/cgroup")
	if strings.Contains(string(own), "/w\n") {
		t.Errorf("the process's main thread moved into the workload cgroup:\n%s", own)
	}

	// A tasks file the agent cannot write to: New carries on without.
	ro, err := os.Open(filepath.Join(w, "tasks"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{StateDir: t.TempDir(), WorkloadTasks: ro})
	if err != nil {
		t.Fatalf("New with an unusable workload cgroup: %v", err)
	}
	if s.hasWorkload() {
		t.Error("a workload thread without a cgroup to be in")
	}
}
