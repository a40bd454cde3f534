package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/runtime/local"
)

// TestSecondServerSameDataDir: a second sbx serve on a running server's
// data dir (on another port, without a socket or network to collide on)
// is refused at once, and the first server's run root stays mounted: the
// second, failing, used to unmount it on its way out when it held no
// sandbox, and the records of every sandbox made after were lost.
func TestSecondServerSameDataDir(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, "serve", "--listen", freeAddr(t), "--data-dir", s.dataDir,
		"--agent-path", s.agent, "--listen-unix", "none", "--network", "none",
		"--credentials-path", filepath.Join(t.TempDir(), "credentials"))
	// A second server that does start runs as a re-executed child too:
	// the whole process group goes at the deadline, and the output's
	// pipe is not waited for past it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("a second sbx serve on the same data dir started (or hung): %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "in use by another sbx serve") {
		t.Errorf("second sbx serve said %q, want the data dir named in use", out)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mi), " "+local.RunRootOf(s.dataDir)+" ") {
		t.Fatalf("the first server's run root %s is no longer mounted", local.RunRootOf(s.dataDir))
	}
	c := s.client()
	sb, err := c.Run(ctx, sbx.Image("busybox"))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Delete(context.Background())
	p, err := sb.Exec(ctx, []string{"echo", "still here"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := p.Result(); err != nil || strings.TrimSpace(string(r.Stdout)) != "still here" {
		t.Errorf("exec in the first server after the refusal: %+v, %v", r, err)
	}
}
