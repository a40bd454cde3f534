package e2e

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/testenv"
)

// TestStats reads a sandbox's usage through the real server, the Go SDK
// and the CLI: memory a process holds and its limit, processes, disk after
// a sync (with disk limits on), another tenant's NOT_FOUND and an ended
// sandbox's SANDBOX_NOT_RUNNING.
func TestStats(t *testing.T) {
	testenv.Require(t, true, "mkfs.btrfs")
	s := startServer(t, "--default-disk-bytes", "134217728", "--disk-pool-bytes", "1073741824")
	c := s.client()
	ctx := ctxT(t, 2*time.Minute)
	sb, err := c.Run(ctx, sbx.Image("busybox"), sbx.Resources{MemoryBytes: 128 << 20, Pids: 100})
	if err != nil {
		t.Fatal(err)
	}
	// No Wait: Stats waits for a sandbox that is starting.
	st, err := sb.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryLimitBytes != 128<<20 || st.PidsLimit != 100 || st.DiskLimitBytes != 128<<20 || st.Pids < 1 || st.ReadAt.IsZero() {
		t.Fatalf("fresh sandbox: %+v", st)
	}
	run := func(script string) {
		t.Helper()
		p, err := sb.Exec(ctx, []string{"sh", "-c", script})
		if err != nil {
			t.Fatal(err)
		}
		if res, err := p.Result(); err != nil || res.ExitCode != 0 {
			t.Fatalf("%q: %+v, %v", script, res, err)
		}
	}
	run("dd if=/dev/zero of=/dev/shm/x bs=1M count=40 && dd if=/dev/urandom of=/big bs=1M count=20 && sync")
	if st, err = sb.Stats(ctx); err != nil {
		t.Fatal(err)
	}
	if st.MemoryBytes < 40<<20 || st.MemoryPeakBytes < 40<<20 || st.DiskBytes < 20<<20 || st.CPU <= 0 {
		t.Errorf("after 40 MiB in /dev/shm and a 20 MiB file: %+v", st)
	}

	// The CLI, on the Go SDK.
	out, errOut, code := s.cli("", "stats", "--json", sb.ID())
	var v struct {
		MemoryBytes int64 `json:"memory_bytes"`
		PidsLimit   int64 `json:"pids_limit"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.MemoryBytes < 40<<20 || v.PidsLimit != 100 {
		t.Errorf("sbx stats --json: exit %d, %q, stderr %q", code, out, errOut)
	}
	if out, errOut, code := s.cli("", "stats", sb.ID()); code != 0 || !strings.Contains(out, sb.ID()) {
		t.Errorf("sbx stats: exit %d, %q, stderr %q", code, out, errOut)
	} else {
		t.Logf("sbx stats:\n%s", out)
	}

	// Another tenant does not see it.
	other := s.client(s.newTenant("stats-other"))
	if _, err := other.FromID(sb.ID()).Stats(ctx); !errors.Is(err, sbx.ErrNotFound) {
		t.Errorf("another tenant's Stats: %v, want NotFound", err)
	}
	// An ended sandbox: FailedPrecondition naming its state.
	if err := sb.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Stats(ctx); !errors.Is(err, sbx.ErrFailedPrecondition) || sbx.ReasonOf(err) != "SANDBOX_NOT_RUNNING" {
		t.Errorf("Stats after Stop: %v, want FailedPrecondition SANDBOX_NOT_RUNNING", err)
	}
}
