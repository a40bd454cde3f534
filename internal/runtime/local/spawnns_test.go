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
// server's, so the OCI runtime of the next create copies none of the live
// sandboxes' mounts; and the sandboxes work.
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
		// This thread's namespace, the process's (spawner threads run
		// nothing else), and the main thread's (/proc/self).
		b, err := os.ReadFile("/proc/thread-self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		main, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, main...)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, rt.sbRoot()+"/") {
				t.Errorf("a sandbox's mount in the server's mount namespace: %s", line)
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
