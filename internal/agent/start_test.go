package agent_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/testenv"
)

// startAgentConn runs the agent as a runtime does under crun and runc: with
// the sandbox end of a StartPair as descriptor 3 and StartEnv. The client
// sends its first request over the pair at once, before the agent runs.
func startAgentConn(t *testing.T) *testAgent {
	t.Helper()
	dir, err := os.MkdirTemp("", "a")
	if err != nil {
		t.Fatal(err)
	}
	host, end, err := agent.StartPair()
	if err != nil {
		t.Fatal(err)
	}
	a := &testAgent{stateDir: filepath.Join(dir, "s"), stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	a.cmd = exec.Command(testenv.AgentBinary(t), "--state-dir", a.stateDir, "--"+agent.ConnFlag+"=3")
	a.cmd.Env = append(os.Environ(), agent.StartEnv...)
	a.cmd.Stdout, a.cmd.Stderr = a.stderr, a.stderr
	a.cmd.ExtraFiles = []*os.File{end}
	a.c = agent.Dial(filepath.Join(a.stateDir, agent.SocketName))
	closeUnused := a.c.UseConn(host)
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	end.Close()
	go func() { _ = a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		closeUnused()
		a.stop(t, dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.c.WaitReady(ctx); err != nil {
		t.Fatalf("agent not ready: %v\n%s", err, a.stderr)
	}
	return a
}

// TestStartConn: the agent answers over the connection the host made before
// it started, listens on its socket too (for a restarted server), serves
// every service, and hides StartEnv from the sandbox's processes.
func TestStartConn(t *testing.T) {
	a := startAgentConn(t)
	ctx := ctxT(t)
	// The socket is there by the time the first answer came.
	if fi, err := os.Lstat(filepath.Join(a.stateDir, agent.SocketName)); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("agent socket: %v %v", fi, err)
	}
	other := agent.Dial(filepath.Join(a.stateDir, agent.SocketName))
	defer other.Close()
	if err := other.WaitReady(ctx); err != nil {
		t.Fatalf("a second client by the socket: %v", err)
	}
	// The services built after the first answer, over both connections.
	r := run(t, a.c, sandbox.ExecSpec{Command: []string{"/bin/sh", "-c", "env"}})
	if r.exit.Code != 0 || !strings.Contains(r.stdout, "PATH=") {
		t.Fatalf("env: %+v", r)
	}
	if strings.Contains(r.stdout, "GOMAXPROCS") {
		t.Fatalf("the agent's start environment leaked into an exec:\n%s", r.stdout)
	}
	path := filepath.Join(tempDir(t), "f")
	if err := other.WriteFile(ctx, path, 0o600, strings.NewReader("hi")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "hi" {
		t.Fatalf("written file: %q %v", b, err)
	}
	if err := a.c.Init(ctx, agentInit{Start: sandbox.StartSpec{Command: []string{"/bin/sh", "-c", "env"}}}); err != nil {
		t.Fatal(err)
	}
	if st, err := a.c.WaitMain(ctx); err != nil || st.Code != 0 {
		t.Fatalf("WaitMain: %+v %v", st, err)
	}
	logs, err := a.c.Logs(ctx, sandbox.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out := readLogs(t, logs); strings.Contains(out, "GOMAXPROCS") || !strings.Contains(out, "PATH=") {
		t.Fatalf("main command's env:\n%s", out)
	}
}

// TestStartConnRefusesNonSocket: a descriptor that is not a Unix stream
// socket is an error at start, not a hang.
func TestStartConnRefusesNonSocket(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := tempDir(t)
	cmd := exec.Command(testenv.AgentBinary(t), "--state-dir", filepath.Join(dir, "s"), "--"+agent.ConnFlag+"=3")
	cmd.ExtraFiles = []*os.File{f}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a socket") {
		t.Fatalf("agent with /dev/null as its connection: %v\n%s", err, out)
	}
}

// TestStartConnEOFWhenAgentDies: the host learns that the agent is gone
// from its end of the pair, without polling.
func TestStartConnEOFWhenAgentDies(t *testing.T) {
	host, end, err := agent.StartPair()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	cmd := exec.Command(testenv.AgentBinary(t), "--unknown-flag")
	cmd.ExtraFiles = []*os.File{end}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	end.Close()
	_ = cmd.Wait()
	_ = host.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := host.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read from a dead agent's connection: %d, %v; want EOF", n, err)
	}
}

// TestUseConnCloseUnused: a start connection that no request took is
// closed by the func UseConn returns, and left alone once one did.
func TestUseConnCloseUnused(t *testing.T) {
	host, end, err := agent.StartPair()
	if err != nil {
		t.Fatal(err)
	}
	defer end.Close()
	c := agent.Dial(filepath.Join(tempDir(t), "none.sock"))
	defer c.Close()
	c.UseConn(host)()
	_ = end.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := end.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read from the agent's end after closeUnused: %d, %v; want EOF", n, err)
	}
}
