package agent_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// waitAgentExit waits (a minute at most) for the agent process to exit and
// returns its exit code.
func waitAgentExit(t *testing.T, a *testAgent) int {
	t.Helper()
	select {
	case <-a.exited:
	case <-time.After(time.Minute):
		t.Fatalf("the agent did not end the sandbox at its deadline; its output:\n%s", a.stderr)
	}
	return a.cmd.ProcessState.ExitCode() // set by startAgent's Wait
}

// pidGone reports whether pid no longer runs (gone, or a zombie).
func pidGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// TestBackstopMainCommand: a main command that ignores SIGTERM, and an
// exec, outlive the deadline; the agent ends both (SIGKILL after the
// grace), records the main command's exit with TimedOut and exits with
// ExitDeadline.
func TestBackstopMainCommand(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	err := a.c.Init(ctx, agentInit{Start: sandbox.StartSpec{
		Command:  []string{"sh", "-c", `trap "" TERM; while :; do sleep 1; done`},
		Deadline: time.Now().Add(time.Second),
	}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.c.Exec(ctx, sandbox.ExecSpec{Command: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitExeced(t, p, "sleep")
	st, err := a.c.WaitMain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.TimedOut || st.Signal != "SIGKILL" {
		t.Fatalf("main command's exit: %+v; want TimedOut, SIGKILL (it ignores SIGTERM)", st)
	}
	if code := waitAgentExit(t, a); code != agent.ExitDeadline {
		t.Fatalf("agent exit code %d, want %d; its output:\n%s", code, agent.ExitDeadline, a.stderr)
	}
	fst, err := agent.ReadExitFile(a.stateDir)
	if err != nil || fst == nil || !fst.TimedOut || fst.Code != 137 {
		t.Fatalf("exit file: %+v, %v", fst, err)
	}
	logs, err := agent.ReadLogs(a.stateDir, sandbox.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := readLogs(t, logs); !strings.Contains(got, "outlived its deadline") {
		t.Errorf("the sandbox log does not say why it ended: %q", got)
	}
}

// TestBackstopIdle: an idle sandbox (empty start, as a warm pool's) whose
// deadline arrives with a later deadline-only Init, after an exec ran (a
// warm sandbox claimed RUNNING); the agent ends it and leaves an exit file
// that says so.
func TestBackstopIdle(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	if err := a.c.Init(ctx, agentInit{}); err != nil {
		t.Fatal(err)
	}
	p, err := a.c.Exec(ctx, sandbox.ExecSpec{Command: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ev, err := p.Recv()
	if err != nil || ev.Kind != sandbox.EventStarted {
		t.Fatalf("first event %+v, %v", ev, err)
	}
	// The claim's deadline, handed over after a process ran.
	if err := a.c.Init(ctx, agentInit{Start: sandbox.StartSpec{Deadline: time.Now().Add(time.Second)}}); err != nil {
		t.Fatalf("deadline-only Init on a started agent: %v", err)
	}
	// Without a deadline it is still a second start, refused.
	err = a.c.Init(ctx, agentInit{})
	wantKind(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonAgentInitialized)

	st, err := a.c.WaitMain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.TimedOut || st.Code != 143 {
		t.Fatalf("idle sandbox's end: %+v; want TimedOut, 143", st)
	}
	if code := waitAgentExit(t, a); code != agent.ExitDeadline {
		t.Fatalf("agent exit code %d, want %d; its output:\n%s", code, agent.ExitDeadline, a.stderr)
	}
	if !pidGone(ev.PID) {
		t.Errorf("exec %d still runs after the agent ended the sandbox", ev.PID)
	}
	fst, err := agent.ReadExitFile(a.stateDir)
	if err != nil || fst == nil || !fst.TimedOut {
		t.Fatalf("exit file: %+v, %v", fst, err)
	}
}

// TestBackstopMovedLater: a deadline moved later by a second Init does not
// fire at the first one; the agent keeps serving.
func TestBackstopMovedLater(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	if err := a.c.Init(ctx, agentInit{Start: sandbox.StartSpec{Deadline: time.Now().Add(500 * time.Millisecond)}}); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Init(ctx, agentInit{Start: sandbox.StartSpec{Env: map[string]string{"K": "v"}, Deadline: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	// Past the first deadline by the time this exec ran to its end.
	r := run(t, a.c, sandbox.ExecSpec{Command: []string{"sh", "-c", "sleep 1; echo $K"}})
	if r.stdout != "v\n" || r.exit.Code != 0 {
		t.Fatalf("exec after the first deadline: %+v", r)
	}
	if st, err := agent.ReadExitFile(a.stateDir); err != nil || st != nil {
		t.Fatalf("exit file after a moved deadline: %+v, %v", st, err)
	}
	select {
	case <-a.exited:
		t.Fatalf("the agent exited at the old deadline: %s", a.stderr)
	default:
	}
}
