package bench

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/sbx-run/sbx/internal/testenv"
)

// TestMain lets the test binary act as the harness's floor child, which
// RunFloor starts by re-executing its own binary with FloorArg.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == FloorArg {
		if err := RunFloorChild(os.Args[2], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestFloor runs the bare-runtime floor for real, small: one-at-a-time
// runs, execs, and the parallel runs with their rate and CPU per life.
func TestFloor(t *testing.T) {
	testenv.Require(t, true, "crun")
	img := testenv.BusyboxImage(t)
	dir := t.TempDir()
	ctx := context.Background()
	if err := PrepareBundles(ctx, dir, "crun", img); err != nil {
		t.Fatal(err)
	}
	res, err := RunFloor(ctx, FloorConfig{Runtime: "crun", Dir: dir, Runs: 2, Execs: 2, Parallel: 2, ParallelRuns: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) > 0 {
		t.Fatalf("floor errors: %v", res.Errors)
	}
	if len(res.RunFirst) != 2 || len(res.RunExit) != 2 || len(res.Exec) != 2 {
		t.Errorf("want 2 runs and 2 execs: %+v", res)
	}
	if res.ParallelRate <= 0 || res.ParallelCPU <= 0 || res.CPUPerRun <= 0 {
		t.Errorf("parallel rate and CPU per life must be measured: %+v", res)
	}
}
