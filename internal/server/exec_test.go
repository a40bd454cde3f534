package server_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestExecAllProtocols(t *testing.T) {
	e := newEnv(t, options{})
	protocols := map[string][]connect.ClientOption{
		"connect":  nil,
		"grpc":     {connect.WithGRPC()},
		"grpc-web": {connect.WithGRPCWeb()},
		"json":     {connect.WithProtoJSON()},
	}
	sb := running(t, e.sandboxes(e.keyA), &sbxv1.CreateSandboxRequest{})
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			c := e.sandboxes(e.keyA, opts...)
			s, err := c.Exec(context.Background(), connect.NewRequest(&sbxv1.ExecRequest{SandboxId: sb.Id, Command: []string{"echo", "hi", name}}))
			if err != nil {
				t.Fatal(err)
			}
			r := collect(t, serverStream(s))
			if r.execID == "" || string(r.stdout) != "hi "+name+"\n" || r.exit == nil || r.exit.Code != 0 || r.exit.Truncated {
				t.Fatalf("got %+v", r)
			}
			s, _ = c.Exec(context.Background(), connect.NewRequest(&sbxv1.ExecRequest{SandboxId: sb.Id, Command: []string{"fail"}}))
			r = collect(t, serverStream(s))
			if string(r.stderr) != "failed\n" || r.exit.Code != 1 {
				t.Fatalf("fail: %+v", r)
			}
		})
	}
}

func TestExecErrors(t *testing.T) {
	e := newEnv(t, options{})
	c := e.sandboxes(e.keyA)
	sb := running(t, c, &sbxv1.CreateSandboxRequest{})
	s, err := c.Exec(context.Background(), connect.NewRequest(&sbxv1.ExecRequest{SandboxId: sb.Id, Command: []string{"nosuch"}}))
	if err == nil {
		for s.Receive() {
		}
		err = s.Err()
	}
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonCommandNotFound)
	_, err = c.SignalExec(context.Background(), connect.NewRequest(&sbxv1.SignalExecRequest{SandboxId: sb.Id, ExecId: "ex-99", Signal: "TERM"}))
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonProcessNotFound)
	_, err = c.SignalExec(context.Background(), connect.NewRequest(&sbxv1.SignalExecRequest{SandboxId: sb.Id, ExecId: "ex-1", Signal: "TERM; reboot"}))
	wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonInvalidSpec)
}

func TestExecOutputCap(t *testing.T) {
	e := newEnv(t, options{outputLimit: 100 << 10})
	c := e.sandboxes(e.keyA)
	sb := running(t, c, &sbxv1.CreateSandboxRequest{})
	s, err := c.Exec(context.Background(), connect.NewRequest(&sbxv1.ExecRequest{SandboxId: sb.Id, Command: []string{"spew", "1048576"}}))
	if err != nil {
		t.Fatal(err)
	}
	r := collect(t, serverStream(s))
	if len(r.stdout) != 100<<10 || !r.exit.Truncated {
		t.Fatalf("got %d bytes, truncated=%v", len(r.stdout), r.exit.Truncated)
	}
	// A request may lower the cap, not raise it.
	s, _ = c.Exec(context.Background(), connect.NewRequest(&sbxv1.ExecRequest{SandboxId: sb.Id, Command: []string{"spew", "5000"}, OutputLimitBytes: 1000}))
	r = collect(t, serverStream(s))
	if len(r.stdout) != 1000 || !r.exit.Truncated {
		t.Fatalf("lowered cap: %d bytes, truncated=%v", len(r.stdout), r.exit.Truncated)
	}
	s, _ = c.Exec(context.Background(), connect.NewRequest(&sbxv1.ExecRequest{SandboxId: sb.Id, Command: []string{"spew", "5000"}}))
	r = collect(t, serverStream(s))
	if len(r.stdout) != 5000 || r.exit.Truncated {
		t.Fatalf("under cap: %d bytes, truncated=%v", len(r.stdout), r.exit.Truncated)
	}
}

func TestExecStdinAndSignalsByID(t *testing.T) {
	e := newEnv(t, options{})
	c := e.sandboxes(e.keyA)
	ctx := context.Background()
	sb := running(t, c, &sbxv1.CreateSandboxRequest{})
	s, err := c.Exec(ctx, connect.NewRequest(&sbxv1.ExecRequest{SandboxId: sb.Id, Command: []string{"cat"}, Stdin: true}))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Receive() || s.Msg().GetStarted() == nil {
		t.Fatalf("first event: %v %v", s.Msg(), s.Err())
	}
	id := s.Msg().GetStarted().ExecId
	for _, chunk := range []string{"abc", "def"} {
		if _, err := c.WriteStdin(ctx, connect.NewRequest(&sbxv1.WriteStdinRequest{SandboxId: sb.Id, ExecId: id, Data: []byte(chunk)})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.ResizeExec(ctx, connect.NewRequest(&sbxv1.ResizeExecRequest{SandboxId: sb.Id, ExecId: id, Rows: 24, Cols: 80})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CloseStdin(ctx, connect.NewRequest(&sbxv1.CloseStdinRequest{SandboxId: sb.Id, ExecId: id})); err != nil {
		t.Fatal(err)
	}
	r := collect(t, serverStream(s))
	if string(r.stdout) != "abcdef" || r.exit.Code != 0 {
		t.Fatalf("cat: %+v", r)
	}

	// Re-attach replays the output; a signal ends a sleeper.
	s, _ = c.Exec(ctx, connect.NewRequest(&sbxv1.ExecRequest{SandboxId: sb.Id, Command: []string{"sleep"}}))
	s.Receive()
	id = s.Msg().GetStarted().ExecId
	if _, err := c.SignalExec(ctx, connect.NewRequest(&sbxv1.SignalExecRequest{SandboxId: sb.Id, ExecId: id, Signal: "SIGTERM"})); err != nil {
		t.Fatal(err)
	}
	r = collect(t, serverStream(s))
	if r.exit.Signal != "SIGTERM" || r.exit.Code != 143 {
		t.Fatalf("signalled: %+v", r.exit)
	}
	a, err := c.AttachExec(ctx, connect.NewRequest(&sbxv1.AttachExecRequest{SandboxId: sb.Id, ExecId: id}))
	if err != nil {
		t.Fatal(err)
	}
	if r := collect(t, serverStream(a)); r.exit == nil || r.exit.Signal != "SIGTERM" {
		t.Fatalf("attach: %+v", r)
	}
}

func TestExecStreamBidi(t *testing.T) {
	e := newEnv(t, options{})
	c := e.sandboxes(e.keyA, connect.WithGRPC())
	ctx := context.Background()
	sb := running(t, c, &sbxv1.CreateSandboxRequest{})
	bs := c.ExecStream(ctx)
	send := func(m *sbxv1.ExecStreamRequest) {
		t.Helper()
		if err := bs.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	send(&sbxv1.ExecStreamRequest{Msg: &sbxv1.ExecStreamRequest_Start{Start: &sbxv1.ExecRequest{SandboxId: sb.Id, Command: []string{"cat"}, Stdin: true}}})
	send(&sbxv1.ExecStreamRequest{Msg: &sbxv1.ExecStreamRequest_Stdin{Stdin: []byte("ping")}})
	send(&sbxv1.ExecStreamRequest{Msg: &sbxv1.ExecStreamRequest_Resize_{Resize: &sbxv1.ExecStreamRequest_Resize{Rows: 10, Cols: 10}}})
	send(&sbxv1.ExecStreamRequest{Msg: &sbxv1.ExecStreamRequest_CloseStdin{CloseStdin: true}})
	if err := bs.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	r := collect(t, bs.Receive)
	if string(r.stdout) != "ping" || r.exit == nil || r.exit.Code != 0 {
		t.Fatalf("bidi: %+v", r)
	}
}
