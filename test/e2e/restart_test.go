package e2e

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
)

// TestRestartKill9 kills the server with SIGKILL while sandboxes run and an
// exec streams, starts it again on the same data dir, and checks that every
// running sandbox is still there and usable and every record is intact.
func TestRestartKill9(t *testing.T) {
	s := startServer(t)
	c := s.client()
	ctx := ctxT(t, 3*time.Minute)

	var running []*sbx.Sandbox
	for i := 0; i < 3; i++ {
		sb, err := c.Run(ctx, sbx.Image("busybox"), sbx.Tags("restart"))
		if err != nil {
			t.Fatal(err)
		}
		if err := sb.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		running = append(running, sb)
	}
	// A completed one: its exit code must survive.
	done, err := c.Run(ctx, sbx.Image("busybox"), sbx.Command("sh", "-c", "exit 9"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := done.WaitUntilComplete(ctx); err != nil {
		t.Fatal(err)
	}
	// A file written before the crash.
	if err := running[0].WriteFile(ctx, "/tmp/before", []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := map[string]sbx.Info{}
	list, err := c.List(ctx, sbx.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range list {
		before[sb.ID()] = sb.Info()
	}

	// An exec that streams while the server dies.
	p, err := running[1].Exec(ctx, []string{"sh", "-c", "i=0; while [ $i -lt 150 ]; do echo tick$i; i=$((i+1)); sleep 0.05; done"})
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(p.Stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "tick") {
		t.Fatalf("streaming exec: %q, %v", line, err)
	}
	execID := p.ID()

	s.kill9()
	// The stream ends with an error, not a fake exit.
	if _, err := p.Wait(); err == nil {
		t.Errorf("exec stream survived the server's death without an error")
	}
	s.start()

	list, err = c.List(ctx, sbx.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	after := map[string]sbx.Info{}
	for _, sb := range list {
		after[sb.ID()] = sb.Info()
	}
	for id, b := range before {
		a, ok := after[id]
		switch {
		case !ok:
			t.Errorf("sandbox %s (%s) is gone after the restart", id, b.State)
		case a.State != b.State || a.ExitCode != b.ExitCode || a.Exited != b.Exited || !a.CreatedAt.Equal(b.CreatedAt) || !a.ExpiresAt.Equal(b.ExpiresAt) || len(a.Transitions) != len(b.Transitions):
			t.Errorf("sandbox %s changed across the restart:\nbefore %+v\nafter  %+v", id, b, a)
		}
	}
	if a := after[done.ID()]; a.State != sbx.StateFailed || a.ExitCode != 9 {
		t.Errorf("completed sandbox after restart: %s code %d, want FAILED 9", a.State, a.ExitCode)
	}
	// Every running sandbox is usable.
	for _, sb := range running {
		sb = c.FromID(sb.ID())
		p, err := sb.Exec(ctx, []string{"echo", "alive"})
		if err != nil {
			t.Errorf("exec in %s after restart: %v", sb.ID(), err)
			continue
		}
		if res, err := p.Result(); err != nil || string(res.Stdout) != "alive\n" {
			t.Errorf("exec in %s after restart: %q, %v", sb.ID(), res.Stdout, err)
		}
	}
	if b, err := c.FromID(running[0].ID()).ReadFile(ctx, "/tmp/before"); err != nil || string(b) != "kept" {
		t.Errorf("file written before the crash: %q, %v", b, err)
	}
	// The exec that streamed during the crash can be re-attached and ends.
	ap, err := c.FromID(running[1].ID()).Attach(ctx, execID)
	if err != nil {
		t.Errorf("re-attach to exec %s: %v", execID, err)
	} else {
		out, _ := io.ReadAll(ap.Stdout)
		code, err := ap.Wait()
		if err != nil || code != 0 || !strings.Contains(string(out), "tick149") {
			t.Errorf("re-attached exec: code %d, %v, output ends %q", code, err, tail(string(out), 40))
		}
	}
	// And a graceful restart too.
	s.terminate()
	s.start()
	for _, sb := range running {
		if info, err := c.FromID(sb.ID()).Refresh(ctx); err != nil || info.State != sbx.StateRunning {
			t.Errorf("%s after SIGTERM restart: %s, %v", sb.ID(), info.State, err)
		}
	}
	if _, err := c.Get(ctx, "sb-doesnotexist0000"); !errors.Is(err, sbx.ErrNotFound) {
		t.Errorf("unknown id after restart: %v", err)
	}
}
