package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// runInProcess runs an agent server of cfg in the test process, its state
// dir in a fresh temp dir, and returns its socket, a context that ends
// after a minute, and stop, which ends the server and returns what Run
// returned; call it once.
func runInProcess(t *testing.T, cfg Config) (sock string, ctx context.Context, stop func() error) {
	t.Helper()
	dir, err := os.MkdirTemp("", "a")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg.StateDir = filepath.Join(dir, "s")
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	runCtx, cancelRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	return filepath.Join(cfg.StateDir, SocketName), ctx, func() error { cancelRun(); return <-done }
}
