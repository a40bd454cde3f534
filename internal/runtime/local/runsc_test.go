package local

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestRunscBrokenState: a runsc container whose state file a killed runsc
// left empty cannot be loaded by runsc itself; delete removes what runsc
// kept of it instead of failing (which made New fail after such a kill).
func TestRunscBrokenState(t *testing.T) {
	path, _, err := findRuntime("runsc")
	if err != nil {
		t.Fatal(err)
	}
	o := newOCIRuntime("runsc", path, t.TempDir())
	id := "sb-broken"
	base := filepath.Join(o.root, id+"_sandbox:"+id)
	for _, f := range []string{base + ".state", base + ".lock"} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if ids, err := o.list(context.Background()); err != nil || len(ids) != 1 || ids[0] != id {
		t.Fatalf("list: %v, %v; want [%s]", ids, err, id)
	}
	if err := o.delete(context.Background(), id); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if ids, err := o.list(context.Background()); err != nil || len(ids) != 0 {
		t.Errorf("list after delete: %v, %v; want none", ids, err)
	}
	// A valid state file is runsc's to judge.
	if o.brokenState("sb-none") {
		t.Error("a missing state file reads as broken")
	}
}
