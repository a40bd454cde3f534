package local

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// These tests are sandbox root attacking the host through the state dir,
// which is mounted read-write at /.sbx/state in the sandbox.

// noHang fails the test if f has not returned within two minutes: a
// deadlock guard, not a timing assertion.
func noHang(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s blocked", what)
	}
}

// TestStateDirFIFOExitFile: a FIFO as main.exit made the host's Stop (and
// Delete, List, recovery) block forever in open(2).
func TestStateDirFIFOExitFile(t *testing.T) {
	eachRuntime(t, []string{"crun", "runsc"}, testStateDirFIFOExitFile)
}

func testStateDirFIFOExitFile(t *testing.T, name string) {
	rt := newRuntime(t, name)
	id, ag := runtimetest.Create(t, harness(t, rt, sandbox.Resources{}), "fifo")
	if r := sh(t, ag, "mkfifo /.sbx/state/main.exit && ls -l /.sbx/state/main.exit"); r.Exit.Code != 0 {
		t.Fatalf("mkfifo inside: %+v", r)
	}
	ctx := context.Background()
	noHang(t, "List", func() {
		if _, err := rt.List(ctx); err != nil {
			t.Error(err)
		}
	})
	noHang(t, "Stop", func() {
		if err := rt.Stop(ctx, id, time.Second); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	noHang(t, "Wait", func() {
		if _, err := rt.Wait(ctx, id); err != nil {
			t.Errorf("Wait: %v", err)
		}
	})
	noHang(t, "recovery", func() {
		if _, err := New(ctx, rt.cfg); err != nil {
			t.Errorf("New over the same root: %v", err)
		}
	})
	noHang(t, "Delete", func() {
		if err := rt.Delete(ctx, id); err != nil {
			t.Errorf("Delete: %v", err)
		}
	})
}

// TestStateDirSymlinkExitFile: a symlink as main.exit is not followed to a
// host file that would read as an exit status.
func TestStateDirSymlinkExitFile(t *testing.T) {
	eachRuntime(t, []string{"crun", "runsc"}, testStateDirSymlinkExitFile)
}

func testStateDirSymlinkExitFile(t *testing.T, name string) {
	rt := newRuntime(t, name)
	id, ag := runtimetest.Create(t, harness(t, rt, sandbox.Resources{}), "exitlink")
	forged := rt.cfg.Root + "/forged.exit"
	if err := os.WriteFile(forged, []byte(`{"code":42}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := sh(t, ag, "ln -s "+forged+" /.sbx/state/main.exit"); r.Exit.Code != 0 {
		t.Fatalf("ln inside: %+v", r)
	}
	in, err := rt.Info(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if in.Exit != nil || in.Status != sandbox.RuntimeRunning {
		t.Errorf("the host followed main.exit to %s: %+v", forged, in)
	}
}

// TestStateDirSymlinkSocket: agent.sock replaced by a symlink to another
// sandbox's agent socket (on the host) must not hand exec in that sandbox.
func TestStateDirSymlinkSocket(t *testing.T) {
	eachRuntime(t, []string{"crun", "runsc"}, testStateDirSymlinkSocket)
}

func testStateDirSymlinkSocket(t *testing.T, name string) {
	rt := newRuntime(t, name)
	h := harness(t, rt, sandbox.Resources{})
	victim, _ := runtimetest.Create(t, h, "victim")
	id, ag := runtimetest.Create(t, h, "attacker")
	vb, err := rt.lookup(victim)
	if err != nil {
		t.Fatal(err)
	}
	script := "mv /.sbx/state/agent.sock /.sbx/state/old.sock && ln -s " + socketIn(vb.state) + " /.sbx/state/agent.sock"
	r := sh(t, ag, script)
	if name == "runsc" {
		// gVisor (20221219) cannot stat, rename or unlink the host socket
		// its gofer made; TestRunscPeerIsOwnGofer covers the dial check.
		if r.Exit.Code == 0 {
			t.Fatalf("gVisor now lets the sandbox replace its agent's socket; assert the refusal instead: %+v", r)
		}
		assertAnswers(t, rt, id)
		return
	}
	if r.Exit.Code != 0 {
		t.Fatalf("swap the socket inside: %+v", r)
	}
	assertRefused(t, rt, id)
}

// TestRunscPeerIsOwnGofer: under gVisor the agent socket's listener is the
// sandbox's gofer; a socket of another sandbox (whose listener is that
// sandbox's gofer) is refused. The sandbox cannot replace its socket under
// this gVisor, so the test presents the other socket to the dial itself.
func TestRunscPeerIsOwnGofer(t *testing.T) {
	rt := newRuntime(t, "runsc")
	h := harness(t, rt, sandbox.Resources{})
	a, _ := runtimetest.Create(t, h, "own")
	v, _ := runtimetest.Create(t, h, "other")
	ab, err := rt.lookup(a)
	if err != nil {
		t.Fatal(err)
	}
	vb, err := rt.lookup(v)
	if err != nil {
		t.Fatal(err)
	}
	arec, _ := ab.snapshot()
	vrec, _ := vb.snapshot()
	if arec.ListenerPID == 0 || arec.ListenerPID == arec.PID || arec.ListenerPID == vrec.ListenerPID {
		t.Fatalf("listener pids: %d (pid %d), other sandbox's %d", arec.ListenerPID, arec.PID, vrec.ListenerPID)
	}
	// A dir whose state/agent.sock is the other sandbox's socket (a hard
	// link: the same inode, so the same listener).
	dir := t.TempDir()
	if err := os.Mkdir(stateDir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(socketIn(vb.state), socketIn(stateDir(dir))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := dialAgent(stateDir(dir), arec)
	defer c.Close()
	if err := c.WaitReady(ctx); err == nil || !strings.Contains(err.Error(), "listener is pid") {
		t.Errorf("dial with sandbox %s's identity reached sandbox %s's agent: %v", a, v, err)
	}
	// The control: with its own identity the other sandbox's agent answers.
	c2 := dialAgent(stateDir(dir), vrec)
	defer c2.Close()
	if err := c2.WaitReady(context.Background()); err != nil {
		t.Errorf("dial with the socket's own sandbox: %v", err)
	}
}

// assertAnswers checks that a new connection reaches sandbox id's agent.
func assertAnswers(t *testing.T, rt *Runtime, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := rt.lookup(id)
	if err != nil {
		t.Fatal(err)
	}
	b.dropClient()
	ag, err := rt.Agent(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	r, err := runtimetest.Exec(ctx, ag, sandbox.ExecSpec{Command: []string{"hostname"}})
	if err != nil || r.Stdout != id+"\n" {
		t.Errorf("the agent no longer answers: %q, %v", r.Stdout, err)
	}
}

// TestStateDirImpostorSocket: a process in the sandbox other than its PID 1
// binds agent.sock (here: a second sbx-agent, which answers every RPC). The
// host must not trust it, since it could fake exec results.
func TestStateDirImpostorSocket(t *testing.T) {
	rt := newRuntime(t, "crun")
	id, ag := runtimetest.Create(t, harness(t, rt, sandbox.Resources{}), "impostor")
	b, err := rt.lookup(id)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.Lstat(socketIn(b.state))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := ag.Exec(ctx, sandbox.ExecSpec{Command: []string{AgentPathInSandbox, "--state-dir", StateDirInSandbox}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Wait until the impostor has replaced the socket.
	for i := 0; ; i++ {
		st, err := os.Lstat(socketIn(b.state))
		if err == nil && !os.SameFile(st, before) && st.Mode().Type() == os.ModeSocket {
			break
		}
		if i > 3000 {
			t.Fatal("the impostor never bound agent.sock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	assertRefused(t, rt, id)
}

// assertRefused checks that a new connection to sandbox id's agent socket
// gets no answer. (Connections made before the swap reach the real agent,
// which is fine: they were verified.)
func assertRefused(t *testing.T, rt *Runtime, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := rt.lookup(id)
	if err != nil {
		t.Fatal(err)
	}
	b.dropClient()
	ag, err := rt.Agent(ctx, id)
	if err != nil {
		if !errors.Is(err, sandbox.ErrUnavailable) {
			t.Errorf("Agent: %v, want Unavailable", err)
		}
		return
	}
	defer ag.Close()
	r, err := runtimetest.Exec(ctx, ag, sandbox.ExecSpec{Command: []string{"hostname"}})
	if err == nil {
		t.Fatalf("the host trusted a socket that is not the sandbox's agent: exec ran, output %q", r.Stdout)
	}
	if !errors.Is(err, sandbox.ErrUnavailable) {
		t.Errorf("exec: %v, want Unavailable", err)
	}
}

// TestAgentNotDumpable: sandbox root (same uid as the agent, without
// CAP_SYS_PTRACE) cannot reach the agent's descriptors, such as the
// listening socket the host trusts.
func TestAgentNotDumpable(t *testing.T) {
	rt := newRuntime(t, "crun")
	_, ag := runtimetest.Create(t, harness(t, rt, sandbox.Resources{}), "dump")
	// Listing /proc/1/fd needs only CAP_DAC_OVERRIDE; following an entry
	// needs ptrace access.
	if r := sh(t, ag, "for f in /proc/1/fd/*; do readlink $f && exit 0; done; exit 1"); r.Exit.Code == 0 {
		t.Errorf("sandbox root can follow the agent's descriptors: %q", r.Stdout)
	}
	if r := sh(t, ag, "cat /proc/1/environ"); r.Exit.Code == 0 {
		t.Errorf("sandbox root can read the agent's environment")
	}
	// Its own processes stay dumpable (execve resets the flag).
	if r := sh(t, ag, "readlink /proc/self/fd/0"); r.Exit.Code != 0 {
		t.Errorf("a sandbox process cannot list its own descriptors: %+v", r)
	}
}
