package local

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// TestRootfsMountsStayOutOfServerNS: a sandbox's root filesystem is
// mounted in a mount namespace of its own (spawnns.go), never in the
// server's nor left in a spawner thread's, so the OCI runtime of the next
// create copies none of the live sandboxes' mounts, and a deleted
// sandbox's overlay goes with its container; and the sandboxes work.
func TestRootfsMountsStayOutOfServerNS(t *testing.T) {
	eachRuntime(t, []string{"crun", "runc"}, func(t *testing.T, name string) {
		rt := newRuntime(t, name)
		h := harness(t, rt, sandbox.Resources{})
		var ids []string
		for i := 0; i < 3; i++ {
			id := runtimetest.NewID("ns")
			if _, err := rt.Create(context.Background(), sandbox.Spec{ID: id, Image: h.Image}); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
			t.Cleanup(func() {
				_ = rt.Stop(context.Background(), id, 0)
				_ = rt.Delete(context.Background(), id)
			})
		}
		// Every thread of the process: none stays in a sandbox's
		// namespace once its create is done (the spawners go home).
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/mountinfo")
			if err != nil {
				continue // the thread ended
			}
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, rt.sbRoot()+"/") {
					t.Errorf("thread %s: a sandbox's mount: %s", task.Name(), line)
				}
			}
		}
		for _, id := range ids {
			ag, err := rt.Agent(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			out := runtimetest.MustExec(t, context.Background(), ag, "ls /bin/sh")
			ag.Close()
			if !strings.Contains(out, "/bin/sh") {
				t.Errorf("%s: %q", id, out)
			}
		}
	})
}
