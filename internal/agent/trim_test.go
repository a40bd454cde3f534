package agent

import (
	"testing"
)

// TestTrimSkipsSmallGrowth checks that a trim after a little work (a small
// exec) is skipped, and one after MiBs of allocations (a file transfer)
// runs and moves the base.
func TestTrimSkipsSmallGrowth(t *testing.T) {
	// The rule, on numbers: the held heap of this process moves with
	// every other test's garbage and the scavenger, so it cannot be
	// steered precisely enough to test the rule through it.
	const base = 64 << 20
	for _, c := range []struct {
		held, base uint64
		want       bool
	}{
		{base + 4<<10, base, false},             // an exec's few KiB
		{base + trimMinGrowth - 1, base, false}, // just under the growth
		{base + trimMinGrowth, base, true},      // a file transfer's MiBs
		{base - 8<<20, base, false},             // shrunk since the base
		{base, 0, true},                         // no base yet: the first trim runs
	} {
		if got := trimDue(c.held, c.base); got != c.want {
			t.Errorf("trimDue(held %d, base %d) = %v, want %v", c.held, c.base, got, c.want)
		}
	}

	// Through the real heap: a trim sets the base to the heap it leaves,
	// so that the next small exec does not trim again.
	old := trimBase.Load()
	t.Cleanup(func() { trimBase.Store(old) })
	trimBase.Store(0)
	if !trimNeeded() {
		t.Fatal("with no base, the first trim must run")
	}
	trim()
	if b := trimBase.Load(); b == 0 || trimDue(b, b) {
		t.Fatalf("after a trim the base is %d; want the held heap, which needs no trim yet", b)
	}
}
