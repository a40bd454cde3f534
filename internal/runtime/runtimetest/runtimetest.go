// Package runtimetest is the conformance suite of sandbox.Runtime: every
// runtime implementation (local with crun and runc, Kubernetes) runs Run and
// passes it unchanged. It needs an image with a busybox userland (sh, cat,
// sleep, tty, stty, head, sha256sum) and nothing of the host.
package runtimetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Harness is what the suite needs of one runtime.
type Harness struct {
	// Runtime is the runtime under test. The suite creates and deletes its
	// own sandboxes; other sandboxes may exist.
	Runtime sandbox.Runtime
	// Image is a reference to a busybox image the runtime can pull.
	Image string
	// Resources are given to every sandbox; zero uses the runtime's defaults.
	Resources sandbox.Resources
	// Timeout bounds each subtest; default one minute.
	Timeout time.Duration
}

var seq atomic.Int64

// NewID returns a sandbox id unique across test processes.
func NewID(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b) + "-" + itoa(seq.Add(1))
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// Run runs the conformance suite against h.
func Run(t *testing.T, h Harness) {
	if h.Timeout == 0 {
		h.Timeout = time.Minute
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"Lifecycle", testLifecycle},
		{"UnknownID", testUnknownID},
		{"DuplicateID", testDuplicateID},
		{"ExitCodes", testExitCodes},
		{"MainCommandCompletes", testMainCompletes},
		{"MainCommandFails", testMainFails},
		{"StopMainCommand", testStopMain},
		{"StopIdempotent", testStopIdempotent},
		{"Files", testFiles},
		{"LargeFile", testLargeFile},
		{"Signals", testSignals},
		{"StdinEOF", testStdinEOF},
		{"PTY", testPTY},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func ctxFor(t *testing.T, h Harness) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// Create creates a sandbox and registers its deletion at cleanup.
func Create(t *testing.T, h Harness, prefix string) (string, sandbox.Agent) {
	t.Helper()
	ctx := ctxFor(t, h)
	id := NewID(prefix)
	info, err := h.Runtime.Create(ctx, sandbox.Spec{ID: id, Image: h.Image, Resources: h.Resources})
	if err != nil {
		t.Fatalf("Create(%s): %v", id, err)
	}
	t.Cleanup(func() {
		err := h.Runtime.Delete(context.Background(), id)
		if err != nil && !errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("Delete(%s): %v", id, err)
		}
	})
	if info.ID != id || info.Status != sandbox.RuntimeRunning {
		t.Fatalf("Create returned %+v, want id %s running", info, id)
	}
	ag, err := h.Runtime.Agent(ctx, id)
	if err != nil {
		t.Fatalf("Agent(%s): %v", id, err)
	}
	t.Cleanup(func() { ag.Close() })
	return id, ag
}

// Result is what a finished process produced.
type Result struct {
	Stdout, Stderr string
	Exit           sandbox.ExitStatus
}

// Exec runs a command to completion and collects its output.
func Exec(ctx context.Context, ag sandbox.Agent, spec sandbox.ExecSpec) (Result, error) {
	p, err := ag.Exec(ctx, spec)
	if err != nil {
		return Result{}, err
	}
	defer p.Close()
	return Collect(p)
}

// Collect reads a process's events until its exit.
func Collect(p sandbox.Process) (Result, error) {
	var out, errb bytes.Buffer
	for {
		ev, err := p.Recv()
		if err == io.EOF {
			return Result{}, errors.New("stream ended without an exit event")
		}
		if err != nil {
			return Result{}, err
		}
		switch ev.Kind {
		case sandbox.EventOutput:
			if ev.Stream == sandbox.Stderr {
				errb.Write(ev.Data)
			} else {
				out.Write(ev.Data)
			}
		case sandbox.EventExit:
			return Result{Stdout: out.String(), Stderr: errb.String(), Exit: *ev.Exit}, nil
		}
	}
}

// MustExec runs a shell command and fails the test unless it exits 0.
func MustExec(t *testing.T, ctx context.Context, ag sandbox.Agent, script string) string {
	t.Helper()
	r, err := Exec(ctx, ag, sandbox.ExecSpec{Command: []string{"sh", "-c", script}})
	if err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	if r.Exit.Code != 0 {
		t.Fatalf("exec %q: exit %+v, stdout %q, stderr %q", script, r.Exit, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

func testLifecycle(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	id, ag := Create(t, h, "life")
	list, err := h.Runtime.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, in := range list {
		if in.ID == id {
			found = in.Status == sandbox.RuntimeRunning && in.Image == h.Image
		}
	}
	if !found {
		t.Fatalf("List does not show %s running with image %s: %+v", id, h.Image, list)
	}
	if err := h.Runtime.Start(ctx, id, sandbox.StartSpec{Env: map[string]string{"GREETING": "hello"}}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got := MustExec(t, ctx, ag, `echo "$GREETING from $(hostname)"`); got != "hello from "+id+"\n" {
		t.Errorf("exec output %q, want %q", got, "hello from "+id+"\n")
	}
	if err := h.Runtime.Stop(ctx, id, 5*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := h.Runtime.Wait(ctx, id); err != nil {
		t.Fatalf("Wait after Stop: %v", err)
	}
	list, err = h.Runtime.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range list {
		if in.ID == id && in.Status != sandbox.RuntimeStopped {
			t.Errorf("after Stop, List says %s is %s", id, in.Status)
		}
	}
	if _, err := h.Runtime.Agent(ctx, id); !errors.Is(err, sandbox.ErrFailedPrecondition) {
		t.Errorf("Agent of a stopped sandbox: %v, want FailedPrecondition", err)
	}
	if err := h.Runtime.Delete(ctx, id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := h.Runtime.Delete(ctx, id); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("second Delete: %v, want NotFound", err)
	}
	list, _ = h.Runtime.List(ctx)
	for _, in := range list {
		if in.ID == id {
			t.Errorf("List still shows deleted sandbox %s", id)
		}
	}
}

func testUnknownID(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	id := NewID("nosuch")
	checks := map[string]error{}
	_, checks["Agent"] = h.Runtime.Agent(ctx, id)
	checks["Start"] = h.Runtime.Start(ctx, id, sandbox.StartSpec{})
	_, checks["Wait"] = h.Runtime.Wait(ctx, id)
	checks["Stop"] = h.Runtime.Stop(ctx, id, time.Second)
	checks["Delete"] = h.Runtime.Delete(ctx, id)
	for name, err := range checks {
		if !errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("%s(unknown id): %v, want NotFound", name, err)
		}
	}
	_, err := h.Runtime.Create(ctx, sandbox.Spec{ID: "../bad id", Image: h.Image})
	if !errors.Is(err, sandbox.ErrInvalidArgument) {
		t.Errorf("Create with a bad id: %v, want InvalidArgument", err)
	}
}

func testDuplicateID(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	id, _ := Create(t, h, "dup")
	_, err := h.Runtime.Create(ctx, sandbox.Spec{ID: id, Image: h.Image})
	if !errors.Is(err, sandbox.ErrAlreadyExists) {
		t.Fatalf("second Create(%s): %v, want AlreadyExists", id, err)
	}
}

func testExitCodes(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	_, ag := Create(t, h, "exit")
	for _, code := range []int{0, 1, 3, 42, 255} {
		r, err := Exec(ctx, ag, sandbox.ExecSpec{Command: []string{"sh", "-c", "echo out; echo err >&2; exit " + itoa(int64(code))}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Exit.Code != code || r.Stdout != "out\n" || r.Stderr != "err\n" {
			t.Errorf("exit %d: got %+v", code, r)
		}
	}
	r, err := Exec(ctx, ag, sandbox.ExecSpec{Command: []string{"sh", "-c", "kill -KILL $$"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Exit.Code != 137 || r.Exit.Signal != "SIGKILL" {
		t.Errorf("killed by SIGKILL: got %+v, want code 137 signal SIGKILL", r.Exit)
	}
}

func testMainCompletes(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	id, ag := Create(t, h, "main")
	err := h.Runtime.Start(ctx, id, sandbox.StartSpec{Command: []string{"sh", "-c", "echo main-out; echo main-err >&2"}, WorkingDir: "/tmp"})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	st, err := h.Runtime.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if st.Code != 0 || st.Signal != "" {
		t.Errorf("main command ended %+v, want exit 0", st)
	}
	logs, err := ag.Logs(ctx, sandbox.LogOptions{})
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	defer logs.Close()
	// The log may keep the two streams apart or merge them; either way it
	// holds both lines.
	var all strings.Builder
	for {
		o, err := logs.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Logs: %v", err)
		}
		all.Write(o.Data)
	}
	if got := all.String(); !strings.Contains(got, "main-out\n") || !strings.Contains(got, "main-err\n") || len(got) != len("main-out\nmain-err\n") {
		t.Errorf("logs: %q, want main-out and main-err lines", got)
	}
}

func testMainFails(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	id, _ := Create(t, h, "fail")
	if err := h.Runtime.Start(ctx, id, sandbox.StartSpec{Command: []string{"sh", "-c", "exit 7"}}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	st, err := h.Runtime.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if st.Code != 7 {
		t.Errorf("main command ended %+v, want exit 7", st)
	}
	// Wait again gives the same answer.
	st2, err := h.Runtime.Wait(ctx, id)
	if err != nil || st2.Code != 7 {
		t.Errorf("second Wait: %+v, %v", st2, err)
	}
}

func testStopMain(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	id, _ := Create(t, h, "stopm")
	if err := h.Runtime.Start(ctx, id, sandbox.StartSpec{Command: []string{"sleep", "1000"}}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := h.Runtime.Stop(ctx, id, 10*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	st, err := h.Runtime.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if st.Signal != "SIGTERM" || st.Code != 143 {
		t.Errorf("main command ended %+v, want SIGTERM (143): the grace period should let it end by SIGTERM", st)
	}
}

func testStopIdempotent(t *testing.T, h Harness) {
	ctx := ctxFor(t, h)
	id, _ := Create(t, h, "stopi")
	for i := 0; i < 3; i++ {
		if err := h.Runtime.Stop(ctx, id, time.Second); err != nil {
			t.Fatalf("Stop #%d: %v", i+1, err)
		}
	}
	if _, err := h.Runtime.Wait(ctx, id); err != nil {
		t.Fatalf("Wait of an idle stopped sandbox: %v", err)
	}
}
