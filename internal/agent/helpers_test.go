package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/testenv"
)

// testAgent is a real sbx-agent binary run as a plain subprocess.
type testAgent struct {
	c        *agent.Client
	cmd      *exec.Cmd
	stateDir string
	stderr   *bytes.Buffer
	exited   chan struct{}
}

// startAgent runs the agent with a short temp state dir (Unix socket paths
// are limited to 108 bytes, which t.TempDir() can exceed).
func startAgent(t testing.TB, args ...string) *testAgent {
	t.Helper()
	bin := testenv.AgentBinary(t)
	dir, err := os.MkdirTemp("", "a")
	if err != nil {
		t.Fatal(err)
	}
	a := &testAgent{stateDir: filepath.Join(dir, "s"), stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	a.cmd = exec.Command(bin, append([]string{"--state-dir", a.stateDir}, args...)...)
	a.cmd.Stdout, a.cmd.Stderr = a.stderr, a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); close(a.exited) }()
	a.c = agent.Dial(filepath.Join(a.stateDir, agent.SocketName))
	t.Cleanup(func() { a.stop(t, dir) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.c.WaitReady(ctx); err != nil {
		t.Fatalf("agent not ready: %v\n%s", err, a.stderr)
	}
	agent.WaitStreamsPrepared(a.c)
	return a
}

// stop closes the client, ends the agent with SIGTERM (failing t if it
// does not exit within 10 s) and removes dir.
func (a *testAgent) stop(t testing.TB, dir string) {
	a.c.Close()
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.exited
		t.Errorf("the agent did not exit on SIGTERM; its output:\n%s", a.stderr)
	}
	os.RemoveAll(dir)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// result is everything a finished process said.
type result struct {
	id     string
	pid    int
	stdout string
	stderr string
	exit   sandbox.ExitStatus
}

// collect reads a process's events to the end.
func collect(t testing.TB, p sandbox.Process) result {
	t.Helper()
	var r result
	var out, errb strings.Builder
	for {
		ev, err := p.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		switch ev.Kind {
		case sandbox.EventStarted:
			r.id, r.pid = ev.ExecID, ev.PID
		case sandbox.EventOutput:
			if ev.Stream == sandbox.Stderr {
				errb.Write(ev.Data)
			} else {
				out.Write(ev.Data)
			}
		case sandbox.EventExit:
			r.exit = *ev.Exit
		}
	}
	r.stdout, r.stderr = out.String(), errb.String()
	return r
}

func run(t testing.TB, c *agent.Client, spec sandbox.ExecSpec) result {
	t.Helper()
	p, err := c.Exec(ctxT(t), spec)
	if err != nil {
		t.Fatalf("exec %q: %v", spec.Command, err)
	}
	defer p.Close()
	return collect(t, p)
}

// readUntil reads output events until the accumulated output contains want.
func readUntil(t testing.TB, p sandbox.Process, want string) string {
	t.Helper()
	var out strings.Builder
	for !strings.Contains(out.String(), want) {
		ev, err := p.Recv()
		if err != nil {
			t.Fatalf("waiting for %q, got %q and then: %v", want, out.String(), err)
		}
		if ev.Kind == sandbox.EventExit {
			t.Fatalf("waiting for %q, got %q and then exit %+v", want, out.String(), ev.Exit)
		}
		out.Write(ev.Data)
	}
	return out.String()
}

// waitExeced reads p's Started event and waits until its process runs the
// program comm (it has exec'd), so a signal sent next reaches that program.
func waitExeced(t testing.TB, p sandbox.Process, comm string) {
	t.Helper()
	ev, err := p.Recv()
	if err != nil || ev.Kind != sandbox.EventStarted {
		t.Fatalf("first event %+v, %v: want started", ev, err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", ev.PID))
		if err == nil && strings.TrimSpace(string(b)) == comm {
			return
		}
	}
	t.Fatalf("process %d never ran %s", ev.PID, comm)
}

func wantKind(t testing.TB, err, kind error, reason string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error %v: want kind %v", err, kind)
	}
	if reason != "" && sandbox.ReasonOf(err) != reason {
		t.Fatalf("error %v: reason %q, want %q", err, sandbox.ReasonOf(err), reason)
	}
}

type agentInit = agent.InitSpec
