package agent_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestExecOutputAndExitCode(t *testing.T) {
	a := startAgent(t)
	r := run(t, a.c, sandbox.ExecSpec{Command: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}})
	if r.stdout != "out\n" || r.stderr != "err\n" || r.exit.Code != 3 || r.exit.Signal != "" {
		t.Fatalf("got %+v", r)
	}
	if r.id == "" || r.pid <= 0 {
		t.Fatalf("started event: id %q pid %d", r.id, r.pid)
	}
	_, err := a.c.Exec(ctxT(t), sandbox.ExecSpec{Command: []string{"no-such-command-sbx"}})
	wantKind(t, err, sandbox.ErrNotFound, sandbox.ReasonCommandNotFound)
	_, err = a.c.Exec(ctxT(t), sandbox.ExecSpec{})
	wantKind(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonInvalidSpec)
}

func TestExecEnvCwdUser(t *testing.T) {
	a := startAgent(t)
	dir, err := os.MkdirTemp("", "cwd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	err = a.c.Init(ctxT(t), initSpec(sandbox.ImageConfig{Env: []string{"A=image", "B=image", "PATH=/usr/bin:/bin"}},
		sandbox.StartSpec{Env: map[string]string{"B=": "x"}, WorkingDir: dir}))
	wantKind(t, err, sandbox.ErrInvalidArgument, "")

	a = startAgent(t)
	if err := a.c.Init(ctxT(t), initSpec(sandbox.ImageConfig{Env: []string{"A=image", "B=image", "C=image", "PATH=/usr/bin:/bin"}},
		sandbox.StartSpec{Env: map[string]string{"B": "start", "C": "start"}, WorkingDir: dir})); err != nil {
		t.Fatal(err)
	}
	r := run(t, a.c, sandbox.ExecSpec{Command: []string{"sh", "-c", `echo "$A $B $C"; pwd`}, Env: map[string]string{"C": "exec"}})
	if want := "image start exec\n" + dir + "\n"; r.stdout != want {
		t.Fatalf("stdout %q, want %q", r.stdout, want)
	}
	r = run(t, a.c, sandbox.ExecSpec{Command: []string{"pwd"}, WorkingDir: "/tmp"})
	if r.stdout != "/tmp\n" {
		t.Fatalf("pwd in /tmp: %q", r.stdout)
	}
	r = run(t, a.c, sandbox.ExecSpec{Command: []string{"sh", "-c", "id -u; id -g; echo $HOME"}, User: "nobody", WorkingDir: "/"})
	if !strings.HasPrefix(r.stdout, "65534\n") {
		t.Fatalf("as nobody: %q %q", r.stdout, r.stderr)
	}
	r = run(t, a.c, sandbox.ExecSpec{Command: []string{"sh", "-c", "id -u; id -g"}, User: "1234:4321", WorkingDir: "/"})
	if r.stdout != "1234\n4321\n" {
		t.Fatalf("as 1234:4321: %q %q", r.stdout, r.stderr)
	}
	_, err = a.c.Exec(ctxT(t), sandbox.ExecSpec{Command: []string{"true"}, User: "no-such-user-sbx"})
	wantKind(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonInvalidSpec)
}

func TestExecStdin(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	p, err := a.c.Exec(ctx, sandbox.ExecSpec{Command: []string{"sh", "-c", "cat; echo done"}, Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := a.c.WriteStdin(ctx, p.ID(), []byte("hello ")); err != nil {
		t.Fatal(err)
	}
	if err := a.c.WriteStdin(ctx, p.ID(), []byte("world\n")); err != nil {
		t.Fatal(err)
	}
	if err := a.c.CloseStdin(ctx, p.ID()); err != nil {
		t.Fatal(err)
	}
	r := collect(t, p)
	if r.stdout != "hello world\ndone\n" || r.exit.Code != 0 {
		t.Fatalf("got %+v", r)
	}
	err = a.c.WriteStdin(ctx, p.ID(), []byte("late"))
	wantKind(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonProcessExited)
	err = a.c.WriteStdin(ctx, "nope", []byte("x"))
	wantKind(t, err, sandbox.ErrNotFound, sandbox.ReasonProcessNotFound)

	// Without Stdin the process reads EOF at once.
	r = run(t, a.c, sandbox.ExecSpec{Command: []string{"cat"}})
	if r.stdout != "" || r.exit.Code != 0 {
		t.Fatalf("cat without stdin: %+v", r)
	}
}

func TestExecSignal(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	for _, sig := range []string{"TERM", "SIGINT", "9"} {
		// No shell: a non-interactive sh catches SIGINT between commands,
		// so a signal that lands after its "echo ready" but before it forks
		// sleep is lost. Signal sleep itself, once it runs (it has exec'd).
		p, err := a.c.Exec(ctx, sandbox.ExecSpec{Command: []string{"sleep", "100"}})
		if err != nil {
			t.Fatal(err)
		}
		waitExeced(t, p, "sleep")
		if err := a.c.Signal(ctx, p.ID(), sig); err != nil {
			t.Fatal(err)
		}
		r := collect(t, p)
		p.Close()
		want := map[string]string{"TERM": "SIGTERM", "SIGINT": "SIGINT", "9": "SIGKILL"}[sig]
		if r.exit.Signal != want {
			t.Fatalf("signal %s: exit %+v, want %s", sig, r.exit, want)
		}
	}
	p, err := a.c.Exec(ctx, sandbox.ExecSpec{Command: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	collect(t, p)
	wantKind(t, a.c.Signal(ctx, p.ID(), "TERM"), sandbox.ErrFailedPrecondition, sandbox.ReasonProcessExited)
	wantKind(t, a.c.Signal(ctx, p.ID(), "SIGNOPE"), sandbox.ErrInvalidArgument, "")
}

func TestExecTimeout(t *testing.T) {
	a := startAgent(t)
	r := run(t, a.c, sandbox.ExecSpec{Command: []string{"sh", "-c", "sleep 100 & sleep 100"}, Timeout: 100 * time.Millisecond})
	if !r.exit.TimedOut || r.exit.Signal != "SIGKILL" || r.exit.Code != 137 {
		t.Fatalf("exit %+v, want a timed-out SIGKILL", r.exit)
	}
}

func TestExecPTY(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	p, err := a.c.Exec(ctx, sandbox.ExecSpec{
		Command: []string{"sh", "-c", "stty size; tty -s && echo isatty; read x; stty size"},
		TTY:     true, Rows: 30, Cols: 100, Stdin: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	readUntil(t, p, "isatty")
	if err := a.c.Resize(ctx, p.ID(), 50, 120); err != nil {
		t.Fatal(err)
	}
	if err := a.c.WriteStdin(ctx, p.ID(), []byte("\n")); err != nil {
		t.Fatal(err)
	}
	r := collect(t, p)
	if !strings.Contains(r.stdout, "50 120") || r.exit.Code != 0 || r.stderr != "" {
		t.Fatalf("after resize: %+v", r)
	}
	// The first size was printed before isatty.
	p2, err := a.c.Attach(ctx, p.ID())
	if err != nil {
		t.Fatal(err)
	}
	all := collect(t, p2)
	p2.Close()
	if !strings.Contains(all.stdout, "30 100") {
		t.Fatalf("replayed PTY output %q lacks the first size", all.stdout)
	}
	wantKind(t, a.c.Resize(ctx, p.ID(), 10, 10), sandbox.ErrFailedPrecondition, sandbox.ReasonProcessExited)
}

func TestAttachAndList(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	p, err := a.c.Exec(ctx, sandbox.ExecSpec{Command: []string{"sh", "-c", "echo one; read x; echo two >&2"}, Stdin: true, Tag: "mytag"})
	if err != nil {
		t.Fatal(err)
	}
	readUntil(t, p, "one")
	p.Close() // the process keeps running

	list, err := a.c.Processes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ExecID != p.ID() || list[0].Tag != "mytag" || list[0].Exit != nil || list[0].PID <= 0 {
		t.Fatalf("processes: %+v", list)
	}
	p2, err := a.c.Attach(ctx, p.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	readUntil(t, p2, "one") // replayed
	if err := a.c.WriteStdin(ctx, p.ID(), []byte("go\n")); err != nil {
		t.Fatal(err)
	}
	r := collect(t, p2)
	if r.stderr != "two\n" || r.exit.Code != 0 {
		t.Fatalf("after attach: %+v", r)
	}
	list, err = a.c.Processes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Exit == nil || list[0].Exit.Code != 0 {
		t.Fatalf("processes after exit: %+v", list)
	}
	_, err = a.c.Attach(ctx, "no-such-id")
	wantKind(t, err, sandbox.ErrNotFound, sandbox.ReasonProcessNotFound)
}

func TestExecLargeOutputNotLost(t *testing.T) {
	a := startAgent(t)
	// 8 MiB through a 1 MiB ring: a connected client must get every byte.
	r := run(t, a.c, sandbox.ExecSpec{Command: []string{"sh", "-c", "head -c 8388608 /dev/zero"}})
	if len(r.stdout) != 8<<20 || r.exit.Code != 0 {
		t.Fatalf("got %d bytes, exit %+v", len(r.stdout), r.exit)
	}
}

func initSpec(img sandbox.ImageConfig, st sandbox.StartSpec) agentInit {
	return agentInit{Image: img, Start: st}
}
