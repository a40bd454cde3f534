package agent

import (
	"runtime"
	"testing"
)

// TestTrimSkipsSmallGrowth checks that a trim after a little work (a small
// exec) is skipped, and one after MiBs of allocations (a file transfer)
// runs and moves the base.
func TestTrimSkipsSmallGrowth(t *testing.T) {
	old := trimBase.Load()
	t.Cleanup(func() { trimBase.Store(old) })

	runtime.GC()
	trimBase.Store(heapHeld())
	small := make([]byte, 4<<10)
	if trimNeeded() {
		t.Fatalf("a trim is needed after %d bytes: the base is %d, held %d", len(small), trimBase.Load(), heapHeld())
	}
	big := make([]byte, 4*trimMinGrowth)
	if !trimNeeded() {
		t.Fatalf("no trim is needed after %d bytes: the base is %d, held %d", len(big), trimBase.Load(), heapHeld())
	}
	runtime.KeepAlive(small)
	runtime.KeepAlive(big)
	trim()
	if trimNeeded() {
		t.Fatalf("a trim is still needed right after one: the base is %d, held %d", trimBase.Load(), heapHeld())
	}

	trimBase.Store(0)
	if !trimNeeded() {
		t.Fatal("with no base, the first trim must run")
	}
}
