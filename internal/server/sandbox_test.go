package server_test

import (
	"bytes"
	"context"
	"testing"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestSandboxLifecycle(t *testing.T) {
	e := newEnv(t, options{})
	c := e.sandboxes(e.keyA)
	ctx := context.Background()
	lt := int64(120)
	sb := running(t, c, &sbxv1.CreateSandboxRequest{Image: "busybox:1", Tags: []string{"a", "b"},
		Env: map[string]string{"K": "v"}, MaxLifetimeSeconds: &lt,
		MountedFiles: []*sbxv1.MountedFile{{Path: "/etc/app.conf", Content: []byte("x=1")}}})
	if sb.State != sbxv1.SandboxState_SANDBOX_STATE_RUNNING || sb.MaxLifetimeSeconds != 120 || sb.Env["K"] != "v" || sb.StartedAt == nil {
		t.Fatalf("running sandbox: %+v", sb)
	}
	if got := e.rt.StartSpec(sb.Id).Files; len(got) != 1 || string(got[0].Content) != "x=1" {
		t.Fatalf("mounted files reached the runtime as %+v", got)
	}

	list, err := c.List(ctx, connect.NewRequest(&sbxv1.ListSandboxesRequest{Tags: []string{"a", "b"}}))
	if err != nil || len(list.Msg.Sandboxes) != 1 || list.Msg.Sandboxes[0].Id != sb.Id {
		t.Fatalf("List: %v %+v", err, list)
	}
	list, _ = c.List(ctx, connect.NewRequest(&sbxv1.ListSandboxesRequest{Tags: []string{"a", "zzz"}}))
	if len(list.Msg.Sandboxes) != 0 {
		t.Fatal("tags are not AND-matched")
	}

	grace := int32(1)
	st, err := c.Stop(ctx, connect.NewRequest(&sbxv1.StopSandboxRequest{Id: sb.Id, GracePeriodSeconds: &grace}))
	if err != nil || st.Msg.Sandbox.State != sbxv1.SandboxState_SANDBOX_STATE_TERMINATED || st.Msg.Sandbox.Reason != sandbox.ReasonStoppedByUser {
		t.Fatalf("Stop: %v %+v", err, st)
	}
	if _, err := c.Stop(ctx, connect.NewRequest(&sbxv1.StopSandboxRequest{Id: sb.Id})); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	got, _ := c.Get(ctx, connect.NewRequest(&sbxv1.GetSandboxRequest{Id: sb.Id}))
	if n := len(got.Msg.Sandbox.Transitions); n != 5 {
		t.Fatalf("%d transitions, want 5", n)
	}
	list, _ = c.List(ctx, connect.NewRequest(&sbxv1.ListSandboxesRequest{States: []sbxv1.SandboxState{sbxv1.SandboxState_SANDBOX_STATE_TERMINATED}}))
	if len(list.Msg.Sandboxes) != 1 {
		t.Fatalf("List by state TERMINATED: %d", len(list.Msg.Sandboxes))
	}

	if _, err := c.Delete(ctx, connect.NewRequest(&sbxv1.DeleteSandboxRequest{Id: sb.Id})); err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(ctx, connect.NewRequest(&sbxv1.GetSandboxRequest{Id: sb.Id}))
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonSandboxNotFound)
}

func TestMainCommandExitCodeAndLogs(t *testing.T) {
	e := newEnv(t, options{})
	c := e.sandboxes(e.keyA)
	ctx := context.Background()
	cr, err := c.Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{Command: []string{"echo", "hello"}}))
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Wait(ctx, connect.NewRequest(&sbxv1.WaitSandboxRequest{Id: cr.Msg.Sandbox.Id}))
	if err != nil || w.Msg.Sandbox.State != sbxv1.SandboxState_SANDBOX_STATE_COMPLETED || w.Msg.Sandbox.ExitCode == nil || *w.Msg.Sandbox.ExitCode != 0 {
		t.Fatalf("Wait: %v %+v", err, w)
	}
	logs, err := c.StreamLogs(ctx, connect.NewRequest(&sbxv1.StreamLogsRequest{SandboxId: cr.Msg.Sandbox.Id, Follow: true}))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for logs.Receive() {
		out.Write(logs.Msg().GetStdout())
	}
	if logs.Err() != nil || out.String() != "hello\n" {
		t.Fatalf("logs %q, err %v", out.String(), logs.Err())
	}

	cr, _ = c.Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{Command: []string{"exit", "4"}}))
	w, _ = c.Wait(ctx, connect.NewRequest(&sbxv1.WaitSandboxRequest{Id: cr.Msg.Sandbox.Id, Until: sbxv1.WaitCondition_WAIT_CONDITION_TERMINAL}))
	if w.Msg.Sandbox.State != sbxv1.SandboxState_SANDBOX_STATE_FAILED || *w.Msg.Sandbox.ExitCode != 4 {
		t.Fatalf("exit 4: %+v", w.Msg.Sandbox)
	}
}

func TestErrorMapping(t *testing.T) {
	e := newEnv(t, options{quota: 1})
	c := e.sandboxes(e.keyA)
	ctx := context.Background()
	zero := int64(0)
	_, err := c.Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{MaxLifetimeSeconds: &zero}))
	wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonLifetimeTooLong)
	huge := int64(1) << 62
	_, err = c.Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{MaxLifetimeSeconds: &huge}))
	wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonLifetimeTooLong)
	_, err = c.Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{Image: "Not A Ref"}))
	wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonInvalidImageRef)
	_, err = c.Get(ctx, connect.NewRequest(&sbxv1.GetSandboxRequest{Id: "sb-nosuch"}))
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonSandboxNotFound)
	_, err = c.Get(ctx, connect.NewRequest(&sbxv1.GetSandboxRequest{Id: "../../etc"}))
	wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonInvalidSpec)

	done, _ := c.Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{Command: []string{"exit", "0"}}))
	c.Wait(ctx, connect.NewRequest(&sbxv1.WaitSandboxRequest{Id: done.Msg.Sandbox.Id}))
	s, err := c.Exec(ctx, connect.NewRequest(&sbxv1.ExecRequest{SandboxId: done.Msg.Sandbox.Id, Command: []string{"echo"}}))
	if err == nil {
		for s.Receive() {
		}
		err = s.Err()
	}
	wantCode(t, err, connect.CodeFailedPrecondition, sandbox.ReasonSandboxNotRunning)

	running(t, c, &sbxv1.CreateSandboxRequest{})
	_, err = c.Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{}))
	ce := wantCode(t, err, connect.CodeResourceExhausted, sandbox.ReasonQuotaExceeded)
	if ce.Meta().Get("Retry-After") != "5" {
		t.Fatalf("Retry-After %q", ce.Meta().Get("Retry-After"))
	}
}
