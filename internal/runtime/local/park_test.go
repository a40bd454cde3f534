package local

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// TestParkStopsEverythingThenDeleteRemovesIt: a parked sandbox runs no
// more (a busy loop in it gets no CPU time), and Delete removes it and
// everything it had; so does the Delete of a runtime started afterwards on
// the same root (a server restarted with parked sandboxes queued), and a
// Delete of a sandbox never parked thaws nothing it should not.
func TestParkStopsEverythingThenDeleteRemovesIt(t *testing.T) {
	eachRuntime(t, []string{"crun", "runc"}, testPark)
}

func testPark(t *testing.T, name string) {
	rt1 := newRuntime(t, name)
	before := snapshot(t, rt1)
	ctx := context.Background()
	h := harness(t, rt1, sandbox.Resources{})
	spin, ag := runtimetest.Create(t, h, "park")
	// A busy loop in the background; its pid is in /tmp/pid.
	sh(t, ag, "sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 & echo $! > /tmp/pid")
	pid := strings.TrimSpace(sh(t, ag, "cat /tmp/pid").Stdout)
	ag.Close()
	if _, err := strconv.Atoi(pid); err != nil {
		t.Fatalf("busy loop pid %q", pid)
	}
	other, ag2 := runtimetest.Create(t, h, "unparked")
	ag2.Close()

	parked, err := rt1.Park(ctx, spin)
	if err != nil || !parked {
		t.Fatalf("Park: %v, %v; want parked", parked, err)
	}
	if _, err := rt1.Park(ctx, "sb-nosuch"); err == nil {
		t.Error("Park of an unknown sandbox did not fail")
	}
	loop := hostPID(t, rt1, spin, pid)
	c0 := cpuTicks(t, loop)
	time.Sleep(500 * time.Millisecond)
	if c1 := cpuTicks(t, loop); c1-c0 > 2 {
		t.Errorf("the parked sandbox's busy loop ran for %d ticks in 0.5 s", c1-c0)
	}

	// A runtime started afterwards on the same root removes it.
	rt2, err := New(ctx, rt1.cfg)
	if err != nil {
		t.Fatalf("second New on the same root: %v", err)
	}
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := rt2.Delete(dctx, spin); err != nil {
		t.Fatalf("Delete of the parked sandbox through a new runtime: %v", err)
	}
	if err := rt2.Delete(dctx, other); err != nil {
		t.Fatalf("Delete of the other sandbox: %v", err)
	}
	checkClean(t, rt2, before)
}

// hostPID finds the host pid of the process that sandbox id's pid
// namespace knows as nspid.
func hostPID(t *testing.T, rt *Runtime, id, nspid string) int {
	t.Helper()
	b, err := rt.lookup(id)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := b.snapshot()
	for _, child := range descendants(rec.PID) {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(child) + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(st), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "NSpid:" && f[len(f)-1] == nspid {
				return child
			}
		}
	}
	t.Fatalf("no process of sandbox %s has pid %s in it", id, nspid)
	return 0
}

// cpuTicks is the user+system CPU time of pid, in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.Atoi(f[11])
	k, _ := strconv.Atoi(f[12])
	return u + k
}

// TestParkMemoryBudget: Park declines a sandbox whose memory would pass the
// budget of parked memory (its teardown then runs as always), and Delete
// gives back what a parked sandbox held.
func TestParkMemoryBudget(t *testing.T) {
	rt := newRuntime(t, "crun")
	ctx := context.Background()
	h := harness(t, rt, sandbox.Resources{})
	a, agA := runtimetest.Create(t, h, "budget")
	agA.Close()
	b, agB := runtimetest.Create(t, h, "budget")
	agB.Close()
	usage, ok := rt.cg.memoryUsage(rt.cfg.CgroupParent, a)
	if !ok || usage <= 0 {
		t.Fatalf("memory usage of %s: %d, %v", a, usage, ok)
	}
	old := parkMemoryBudget
	t.Cleanup(func() { parkMemoryBudget = old })
	// Room for one sandbox of about this size, not two.
	parkMemoryBudget = func() int64 { return usage + usage/2 }

	if parked, err := rt.Park(ctx, a); err != nil || !parked {
		t.Fatalf("Park within the budget: %v, %v", parked, err)
	}
	if parked, err := rt.Park(ctx, b); err != nil || parked {
		t.Fatalf("Park past the budget: %v, %v; want declined", parked, err)
	}
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := rt.Delete(dctx, a); err != nil {
		t.Fatal(err)
	}
	if rt.parked.used != 0 {
		t.Errorf("parked memory after the parked sandbox's Delete: %d", rt.parked.used)
	}
	if parked, err := rt.Park(ctx, b); err != nil || !parked {
		t.Fatalf("Park once the budget is free again: %v, %v", parked, err)
	}
	if err := rt.Delete(dctx, b); err != nil {
		t.Fatal(err)
	}
}
