package runtimetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func testFiles(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	_, ag := Create(t, h, "files")
	if err := ag.WriteFile(ctx, "/work/dir/hello.txt", 0o640, strings.NewReader("hello, sandbox\n")); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	if got := MustExec(t, ctx, ag, "cat /work/dir/hello.txt; stat -c %a /work/dir/hello.txt"); got != "hello, sandbox\n640\n" {
		t.Errorf("inside the sandbox the file reads %q", got)
	}
	MustExec(t, ctx, ag, "echo made inside > /work/inside.txt")
	rc, err := ag.ReadFile(ctx, "/work/inside.txt")
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "made inside\n" {
		t.Errorf("ReadFile: %q, %v", b, err)
	}
	fi, err := ag.Stat(ctx, "/work/dir/hello.txt")
	if err != nil || fi.Size != 15 || fi.IsDir {
		t.Errorf("Stat: %+v, %v", fi, err)
	}
	if _, err := ag.ReadFile(ctx, "/work/nosuch"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("ReadFile of a missing file: %v, want NotFound", err)
	}
}

// testLargeFile moves 100 MiB in and out and checks it byte for byte.
func testLargeFile(t *testing.T, h Harness) {
	if testing.Short() {
		t.Skip("100 MiB transfer skipped in -short mode")
	}
	ctx := ctxFor(t, h)
	_, ag := Create(t, h, "large")
	const size = 100 << 20
	src := rand.NewChaCha8([32]byte{1, 2, 3})
	in := sha256.New()
	if err := ag.WriteFile(ctx, "/tmp/big.bin", 0o600, io.TeeReader(io.LimitReader(src, size), in)); err != nil {
		t.Fatalf("WriteFile 100 MiB: %v", err)
	}
	want := hex.EncodeToString(in.Sum(nil))
	if got := MustExec(t, ctx, ag, "sha256sum /tmp/big.bin"); !strings.HasPrefix(got, want) {
		t.Errorf("sha256sum inside: %q, want %s", got, want)
	}
	rc, err := ag.ReadFile(ctx, "/tmp/big.bin")
	if err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	defer rc.Close()
	out := sha256.New()
	n, err := io.Copy(out, rc)
	if err != nil || n != size {
		t.Fatalf("ReadFile: %d bytes, %v; want %d", n, err, size)
	}
	if got := hex.EncodeToString(out.Sum(nil)); got != want {
		t.Errorf("read back sha256 %s, wrote %s", got, want)
	}
}

func testSignals(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	_, ag := Create(t, h, "sig")
	// A trapped signal: the process decides how to exit.
	p, err := ag.Exec(ctx, sandbox.ExecSpec{Command: []string{"sh", "-c", `trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.05; done`}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitFor(t, p, "ready")
	if err := ag.Signal(ctx, p.ID(), "SIGTERM"); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	r, err := Collect(p)
	if err != nil {
		t.Fatal(err)
	}
	if r.Exit.Code != 5 || !strings.Contains(r.Stdout, "got TERM") {
		t.Errorf("trapped TERM: %+v", r)
	}
	// An untrapped signal ends the process with it.
	p2, err := ag.Exec(ctx, sandbox.ExecSpec{Command: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if ev, err := p2.Recv(); err != nil || ev.Kind != sandbox.EventStarted {
		t.Fatalf("first event: %+v, %v", ev, err)
	}
	if err := ag.Signal(ctx, p2.ID(), "INT"); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	r, err = Collect(p2)
	if err != nil {
		t.Fatal(err)
	}
	if r.Exit.Signal != "SIGINT" || r.Exit.Code != 130 {
		t.Errorf("SIGINT: %+v, want signal SIGINT code 130", r.Exit)
	}
}

// waitFor reads events until stdout holds want.
func waitFor(t *testing.T, p sandbox.Process, want string) {
	t.Helper()
	var out bytes.Buffer
	for !strings.Contains(out.String(), want) {
		ev, err := p.Recv()
		if err != nil {
			t.Fatalf("waiting for %q: %v (got %q)", want, err, out.String())
		}
		if ev.Kind == sandbox.EventExit {
			t.Fatalf("waiting for %q: process exited %+v (got %q)", want, ev.Exit, out.String())
		}
		out.Write(ev.Data)
	}
}

func testStdinEOF(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	_, ag := Create(t, h, "stdin")
	p, err := ag.Exec(ctx, sandbox.ExecSpec{Command: []string{"sh", "-c", "cat; echo eof"}, Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, chunk := range []string{"line one\n", "line two\n"} {
		if err := ag.WriteStdin(ctx, p.ID(), []byte(chunk)); err != nil {
			t.Fatalf("WriteStdin: %v", err)
		}
	}
	if err := ag.CloseStdin(ctx, p.ID()); err != nil {
		t.Fatalf("CloseStdin: %v", err)
	}
	r, err := Collect(p)
	if err != nil {
		t.Fatal(err)
	}
	if r.Stdout != "line one\nline two\neof\n" || r.Exit.Code != 0 {
		t.Errorf("cat with stdin: %+v", r)
	}
	// Without Stdin the process reads EOF at once.
	r, err = Exec(ctx, ag, sandbox.ExecSpec{Command: []string{"sh", "-c", "cat; echo done"}})
	if err != nil || r.Stdout != "done\n" {
		t.Errorf("cat without stdin: %+v, %v", r, err)
	}
}

func testPTY(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	_, ag := Create(t, h, "pty")
	r, err := Exec(ctx, ag, sandbox.ExecSpec{Command: []string{"sh", "-c", "tty; stty size"}, TTY: true, Rows: 30, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	out := strings.ReplaceAll(r.Stdout, "\r\n", "\n")
	if r.Exit.Code != 0 || !strings.HasPrefix(out, "/dev/pts/") || !strings.Contains(out, "30 100\n") {
		t.Errorf("tty; stty size: %+v", r)
	}
	// Resize reaches the process as a new window size.
	p, err := ag.Exec(ctx, sandbox.ExecSpec{Command: []string{"sh", "-c", `trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.05; done`}, TTY: true, Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitFor(t, p, "ready")
	if err := ag.Resize(ctx, p.ID(), 40, 120); err != nil {
		t.Fatalf("Resize: %v", err)
	}
	r, err = Collect(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Stdout, "40 120") {
		t.Errorf("after Resize: %+v", r)
	}
}
