package agent_test

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/sandbox"
)

func readLogs(t *testing.T, s sandbox.OutputStream) string {
	t.Helper()
	defer s.Close()
	var b strings.Builder
	for {
		o, err := s.Recv()
		if err == io.EOF {
			return b.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		b.Write(o.Data)
	}
}

func TestMainCommandLogAndExit(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	st, err := agent.ReadExitFile(a.stateDir)
	if st != nil || err != nil {
		t.Fatalf("exit file before start: %v %v", st, err)
	}
	// Follow from before the start: it must see everything and end at exit.
	follow, err := a.c.Logs(ctx, sandbox.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	script := `for i in 1 2 3 4 5; do echo line$i; done; echo err >&2; exit 7`
	err = a.c.Init(ctx, agentInit{Start: sandbox.StartSpec{
		Command: []string{"sh", "-c", script},
		Files:   []sandbox.File{{Path: "/tmp/sbx-agent-test/f.txt", Content: []byte("hi")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	exit, err := a.c.WaitMain(ctx)
	if err != nil || exit.Code != 7 {
		t.Fatalf("WaitMain: %+v %v", exit, err)
	}
	all := "line1\nline2\nline3\nline4\nline5\nerr\n"
	if got := readLogs(t, follow); got != all {
		t.Fatalf("followed log %q, want %q", got, all)
	}
	fi, err := os.Stat("/tmp/sbx-agent-test/f.txt")
	if err != nil || fi.Mode().Perm() != 0o444 {
		t.Fatalf("init file: %v %v", fi, err)
	}
	os.RemoveAll("/tmp/sbx-agent-test")

	st, err = agent.ReadExitFile(a.stateDir)
	if err != nil || st == nil || st.Code != 7 || st.At.IsZero() {
		t.Fatalf("exit file: %+v %v", st, err)
	}
	s, err := a.c.Logs(ctx, sandbox.LogOptions{Tail: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := readLogs(t, s); got != "line5\nerr\n" {
		t.Fatalf("tail 2: %q", got)
	}
	s, err = agent.ReadLogs(a.stateDir, sandbox.LogOptions{Tail: 100})
	if err != nil {
		t.Fatal(err)
	}
	if got := readLogs(t, s); got != all {
		t.Fatalf("host-side logs: %q", got)
	}
	err = a.c.Init(ctx, agentInit{})
	wantKind(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonAgentInitialized)
}

func TestMainLogRotation(t *testing.T) {
	a := startAgent(t, "--log-max-bytes", "1000")
	ctx := ctxT(t)
	err := a.c.Init(ctx, agentInit{Start: sandbox.StartSpec{Command: []string{"sh", "-c", `i=0; while [ $i -lt 500 ]; do echo "line $i"; i=$((i+1)); done`}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.WaitMain(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{agent.LogFile, agent.LogFile + ".1"} {
		fi, err := os.Stat(filepath.Join(a.stateDir, name))
		if err != nil || fi.Size() > 1000 {
			t.Fatalf("%s: %v %v", name, fi, err)
		}
	}
	s, err := a.c.Logs(ctx, sandbox.LogOptions{Tail: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := readLogs(t, s); got != "line 497\nline 498\nline 499\n" {
		t.Fatalf("tail 3 after rotation: %q", got)
	}
	s, err = a.c.Logs(ctx, sandbox.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := readLogs(t, s)
	if !strings.HasSuffix(got, "line 499\n") || len(got) > 2000 {
		t.Fatalf("whole kept log: %d bytes ending %q", len(got), got[max(0, len(got)-20):])
	}
}

func TestMainStartFailure(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	err := a.c.Init(ctx, agentInit{Start: sandbox.StartSpec{Command: []string{"/no/such/binary"}}})
	wantKind(t, err, sandbox.ErrNotFound, sandbox.ReasonCommandNotFound)
	exit, err := a.c.WaitMain(ctx)
	if err != nil || exit.Code != 127 {
		t.Fatalf("WaitMain after a failed start: %+v %v", exit, err)
	}
}

func TestSIGTERMForwardedToMain(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	err := a.c.Init(ctx, agentInit{Start: sandbox.StartSpec{Command: []string{"sh", "-c",
		`trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.05; done`}}})
	if err != nil {
		t.Fatal(err)
	}
	follow, err := a.c.Logs(ctx, sandbox.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for !strings.Contains(got.String(), "ready") {
		o, err := follow.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got.Write(o.Data)
	}
	waited := make(chan sandbox.ExitStatus, 1)
	go func() {
		st, err := a.c.WaitMain(ctx)
		if err != nil {
			t.Errorf("WaitMain: %v", err)
		}
		waited <- st
	}()
	time.Sleep(50 * time.Millisecond) // let WaitMain reach the agent (not a timing assertion)
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-a.exited // the agent exits once its main command has
	st := <-waited
	if st.Code != 42 {
		t.Fatalf("WaitMain: %+v", st)
	}
	fst, err := agent.ReadExitFile(a.stateDir)
	if err != nil || fst == nil || fst.Code != 42 {
		t.Fatalf("exit file: %+v %v", fst, err)
	}
	s, err := agent.ReadLogs(a.stateDir, sandbox.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if log := readLogs(t, s); !strings.Contains(log, "got TERM") {
		t.Fatalf("log %q", log)
	}
	if _, err := os.Stat(filepath.Join(a.stateDir, agent.SocketName)); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
}

func TestIdleSIGTERMEndsEverything(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	p, err := a.c.Exec(ctx, sandbox.ExecSpec{Command: []string{"sh", "-c", "trap '' TERM; echo ready; sleep 1000"}})
	if err != nil {
		t.Fatal(err)
	}
	readUntil(t, p, "ready")
	list, err := a.c.Processes(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("processes: %+v %v", list, err)
	}
	pid := list[0].PID
	waited := make(chan sandbox.ExitStatus, 1)
	go func() {
		st, err := a.c.WaitMain(ctx)
		if err != nil {
			t.Errorf("WaitMain: %v", err)
		}
		waited <- st
	}()
	time.Sleep(50 * time.Millisecond)
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	<-a.exited
	if st := <-waited; st.Signal != "SIGTERM" {
		t.Fatalf("WaitMain of an idle sandbox: %+v", st)
	}
	// The exec ignored SIGTERM; the agent killed it after the grace.
	ev, err := p.Recv()
	for err == nil && ev.Kind != sandbox.EventExit {
		ev, err = p.Recv()
	}
	if err == nil && ev.Exit.Signal != "SIGKILL" {
		t.Fatalf("exec after stop: %+v", ev.Exit)
	}
	if state := procState(pid); state != "" && state != "Z" {
		t.Fatalf("the exec's process %d is still there (state %s)", pid, state)
	}
}

// procState returns the state letter of pid, or "" if it does not exist.
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return ""
}

// TestEmptyInitIsProvisional checks the warm pool's pre-start: an empty
// Init (the image's defaults) is replaced by a later Init, until a process
// runs; then, as after any other Init, a sandbox starts once.
func TestEmptyInitIsProvisional(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	img := sandbox.ImageConfig{Env: []string{"A=image", "PATH=/usr/bin:/bin"}}
	if err := a.c.Init(ctx, agentInit{Image: img}); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Init(ctx, agentInit{Image: img, Start: sandbox.StartSpec{Env: map[string]string{"B": "own"}, WorkingDir: "/tmp"}}); err != nil {
		t.Fatalf("Init after an empty Init: %v", err)
	}
	r := run(t, a.c, sandbox.ExecSpec{Command: []string{"sh", "-c", `echo "$A $B $(pwd)"`}})
	if r.stdout != "image own /tmp\n" {
		t.Fatalf("after the second Init: %q", r.stdout)
	}
	err := a.c.Init(ctx, agentInit{Image: img, Start: sandbox.StartSpec{Env: map[string]string{"B": "late"}}})
	wantKind(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonAgentInitialized)

	// An empty Init is final once a process ran.
	b := startAgent(t)
	if err := b.c.Init(ctx, agentInit{Image: img}); err != nil {
		t.Fatal(err)
	}
	if r := run(t, b.c, sandbox.ExecSpec{Command: []string{"true"}}); r.exit.Code != 0 {
		t.Fatalf("exec: %+v", r)
	}
	err = b.c.Init(ctx, agentInit{Image: img, Start: sandbox.StartSpec{Env: map[string]string{"B": "late"}}})
	wantKind(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonAgentInitialized)
}
