package e2e

import (
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
)

// TestTenancy: another tenant's sandbox answers NOT_FOUND to every call,
// and lists show only one's own; a bad key is Unauthenticated.
func TestTenancy(t *testing.T) {
	s := startServer(t)
	ctx := ctxT(t, 2*time.Minute)
	a := s.client()
	otherKey := s.newTenant("other")
	b := s.client(otherKey)
	t.Cleanup(func() { deleteAll(t, ctxT(t, time.Minute), b) })

	sa, err := a.Run(ctx, sbx.Image("busybox"), sbx.Tags("mine"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sa.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	sbB, err := b.Run(ctx, sbx.Image("busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sbB.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	foreign := b.FromID(sa.ID())
	checks := map[string]error{}
	_, checks["get"] = b.Get(ctx, sa.ID())
	_, checks["exec"] = foreign.Exec(ctx, []string{"true"})
	_, checks["read file"] = foreign.ReadFile(ctx, "/etc/hostname")
	checks["write file"] = foreign.WriteFile(ctx, "/tmp/x", []byte("x"), 0o644)
	checks["logs"] = foreign.Logs(ctx, nil, nil, sbx.LogOptions{})
	checks["stop"] = b.Stop(ctx, sa.ID())
	checks["delete"] = b.Delete(ctx, sa.ID())
	for call, err := range checks {
		if !errors.Is(err, sbx.ErrNotFound) {
			t.Errorf("%s of another tenant's sandbox: %v, want ErrNotFound", call, err)
		}
	}
	list, err := b.List(ctx, sbx.ListOptions{All: true})
	if err != nil || len(list) != 1 || list[0].ID() != sbB.ID() {
		t.Errorf("tenant B lists %v (%v), want only %s", list, err, sbB.ID())
	}
	if info, err := sa.Refresh(ctx); err != nil || info.State != sbx.StateRunning {
		t.Errorf("tenant A's sandbox after B's attempts: %s, %v", info.State, err)
	}
	bad := s.client("sbx_" + strings.Repeat("0", 64))
	if _, err := bad.List(ctx, sbx.ListOptions{}); !errors.Is(err, sbx.ErrUnauthenticated) {
		t.Errorf("unknown key: %v, want ErrUnauthenticated", err)
	}
}

// TestLifetime: a sandbox with a 2-second lifetime ends TERMINATED with
// reason lifetime.
func TestLifetime(t *testing.T) {
	s := startServer(t)
	ctx := ctxT(t, time.Minute)
	c := s.client()
	sb, err := c.Run(ctx, sbx.Image("busybox"), sbx.Lifetime(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	info, err := sb.WaitUntilComplete(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != sbx.StateTerminated || info.Reason != "lifetime" {
		t.Errorf("after its lifetime: %s %q, want TERMINATED \"lifetime\"", info.State, info.Reason)
	}
}

// TestSessionLease: a session whose client is killed (no Close, no more
// heartbeats) is closed by the server after its lease, and its sandboxes
// are stopped.
func TestSessionLease(t *testing.T) {
	s := startServer(t)
	ctx := ctxT(t, 2*time.Minute)
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(cmd.Environ(), envSessionClient+"=1", "SBX_URL="+s.url(), "SBX_API_KEY="+s.key)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 256)
	n, _ := out.Read(buf)
	fields := strings.Fields(string(buf[:n]))
	if len(fields) != 2 {
		t.Fatalf("session client printed %q; stderr: %s", buf[:n], stderr.String())
	}
	sessionID, sandboxID := fields[0], fields[1]
	c := s.client()
	// While the client heartbeats, the sandbox outlives the lease.
	time.Sleep(3 * time.Second)
	if info, err := c.FromID(sandboxID).Refresh(ctx); err != nil || info.State != sbx.StateRunning {
		t.Fatalf("session sandbox while its client lives: %s, %v", info.State, err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	info, err := c.FromID(sandboxID).WaitUntilComplete(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != sbx.StateTerminated || info.Reason != "session closed" || info.SessionID != sessionID {
		t.Errorf("session sandbox after its client died: %s %q (session %s), want TERMINATED \"session closed\"", info.State, info.Reason, info.SessionID)
	}
}
