package agent

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// TestInProcess runs the server inside the test process, so that `go test
// -race` sees the server's goroutines too (the other tests run the agent
// binary, which is built without the race detector). The server reaps with
// wait4(-1) while it runs, so this test must not run in parallel with tests
// that start processes through os/exec.
func TestInProcess(t *testing.T) {
	sock, ctx, stop := runInProcess(t, Config{OutputBufferBytes: 64 << 10})
	c := Dial(sock)
	defer c.Close()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Init(ctx, InitSpec{Start: sandbox.StartSpec{Command: []string{"sh", "-c", "echo main; exit 3"}}}); err != nil {
		t.Fatal(err)
	}
	p, err := c.Exec(ctx, sandbox.ExecSpec{Command: []string{"sh", "-c", "cat; head -c 300000 /dev/zero"}, Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	tp, err := c.Exec(ctx, sandbox.ExecSpec{Command: []string{"sh", "-c", "read x; stty size"}, TTY: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Resize(ctx, tp.ID(), 7, 9)
	_ = c.WriteStdin(ctx, tp.ID(), []byte("\n"))
	_ = c.WriteStdin(ctx, p.ID(), []byte("hi"))
	_ = c.CloseStdin(ctx, p.ID())
	if _, err := c.Processes(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		ev, err := p.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n += len(ev.Data)
	}
	if n != 300002 {
		t.Fatalf("got %d bytes", n)
	}
	var tty strings.Builder
	for {
		ev, err := tp.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		tty.Write(ev.Data)
	}
	if !strings.Contains(tty.String(), "7 9") {
		t.Fatalf("tty output %q", tty.String())
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := c.WriteFile(ctx, path, 0, strings.NewReader(strings.Repeat("x", 1<<20))); err != nil {
		t.Fatal(err)
	}
	r, err := c.ReadFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(r); len(b) != 1<<20 {
		t.Fatalf("read %d", len(b))
	}
	r.Close()
	if st, err := c.WaitMain(ctx); err != nil || st.Code != 3 {
		t.Fatalf("WaitMain %+v %v", st, err)
	}
	logs, err := c.Logs(ctx, sandbox.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if o, err := logs.Recv(); err != nil || string(o.Data) != "main\n" {
		t.Fatalf("logs %q %v", o.Data, err)
	}
	logs.Close()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
