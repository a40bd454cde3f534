package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestMoveNetworkState: a server from before the run root kept the
// network's state in <data dir>/network; the next start moves the state
// files into the run root (a file the run root has already wins: a move
// cut short), drops temporary files and removes the old dir.
func TestMoveNetworkState(t *testing.T) {
	old, dir := filepath.Join(t.TempDir(), "network"), filepath.Join(t.TempDir(), "network")
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"a.json": "old a", "b.json": "old b", ".tmp-123": "partial"} {
		if err := os.WriteFile(filepath.Join(old, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.json"), []byte("moved b"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := moveNetworkState(old, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("old state dir still there: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"a.json", "b.json"}) {
		t.Errorf("run root's state: %v", names)
	}
	for name, want := range map[string]string{"a.json": "old a", "b.json": "moved b"} {
		if b, _ := os.ReadFile(filepath.Join(dir, name)); string(b) != want {
			t.Errorf("%s = %q, want %q", name, b, want)
		}
	}
	// Nothing to move, and the same dir: no-ops.
	if err := moveNetworkState(old, dir); err != nil {
		t.Errorf("nothing to move: %v", err)
	}
	if err := moveNetworkState(dir, dir); err != nil {
		t.Errorf("same dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.json")); err != nil {
		t.Errorf("same dir removed its files: %v", err)
	}
}
