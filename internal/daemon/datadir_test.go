package daemon

import (
	"strings"
	"testing"
)

// TestDataDirLock: a second lock of the same data dir is refused, naming
// the holder, until the first is closed.
func TestDataDirLock(t *testing.T) {
	dir := t.TempDir() + "/data"
	first, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDataDir(dir); err == nil || !strings.Contains(err.Error(), "in use by another sbx serve") || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("second lock: %v, want it refused naming the holder's pid", err)
	}
	first.Close()
	again, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after the first was released: %v", err)
	}
	again.Close()
}
