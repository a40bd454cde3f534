package server_test

import (
	"context"
	"slices"
	"testing"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestSessions(t *testing.T) {
	e := newEnv(t, options{})
	ctx := context.Background()
	ss, c := e.sessions(e.keyA), e.sandboxes(e.keyA)
	lt := int64(300)
	cr, err := ss.Create(ctx, connect.NewRequest(&sbxv1.CreateSessionRequest{LeaseSeconds: 30, Defaults: &sbxv1.SessionDefaults{
		Image: "busybox:1", MaxLifetimeSeconds: &lt, Tags: []string{"run"}, Env: map[string]string{"A": "1"}}}))
	if err != nil {
		t.Fatal(err)
	}
	sess := cr.Msg.Session
	if sess.LeaseSeconds != 30 || sess.ExpiresAt == nil || *sess.Defaults.MaxLifetimeSeconds != 300 {
		t.Fatalf("session: %+v", sess)
	}
	sb := running(t, c, &sbxv1.CreateSandboxRequest{SessionId: sess.Id, Tags: []string{"x"}})
	if sb.Image != "busybox:1" || sb.MaxLifetimeSeconds != 300 || !slices.Equal(sb.Tags, []string{"run", "x"}) || sb.Env["A"] != "1" || sb.SessionId != sess.Id {
		t.Fatalf("defaults not applied: %+v", sb)
	}
	hb, err := ss.Heartbeat(ctx, connect.NewRequest(&sbxv1.HeartbeatSessionRequest{Id: sess.Id}))
	if err != nil || hb.Msg.Session.LastHeartbeat == nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	list, _ := c.List(ctx, connect.NewRequest(&sbxv1.ListSandboxesRequest{SessionId: sess.Id}))
	if len(list.Msg.Sandboxes) != 1 {
		t.Fatalf("List by session: %d", len(list.Msg.Sandboxes))
	}

	cl, err := ss.Close(ctx, connect.NewRequest(&sbxv1.CloseSessionRequest{Id: sess.Id}))
	if err != nil || cl.Msg.Session.CloseReason != lifecycle.ReasonClosedByClient || cl.Msg.Session.ClosedAt == nil {
		t.Fatalf("Close: %v %+v", err, cl)
	}
	got, _ := c.Get(ctx, connect.NewRequest(&sbxv1.GetSandboxRequest{Id: sb.Id}))
	if got.Msg.Sandbox.State != sbxv1.SandboxState_SANDBOX_STATE_TERMINATED || got.Msg.Sandbox.Reason != sandbox.ReasonStoppedBySession {
		t.Fatalf("sandbox after session close: %+v", got.Msg.Sandbox)
	}
	_, err = ss.Heartbeat(ctx, connect.NewRequest(&sbxv1.HeartbeatSessionRequest{Id: sess.Id}))
	wantCode(t, err, connect.CodeFailedPrecondition, sandbox.ReasonSessionClosed)
	g, err := ss.Get(ctx, connect.NewRequest(&sbxv1.GetSessionRequest{Id: sess.Id}))
	if err != nil || g.Msg.Session.ExpiresAt != nil {
		t.Fatalf("Get closed session: %v %+v", err, g)
	}

	zero := int64(0)
	_, err = ss.Create(ctx, connect.NewRequest(&sbxv1.CreateSessionRequest{Defaults: &sbxv1.SessionDefaults{MaxLifetimeSeconds: &zero}}))
	wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonLifetimeTooLong)
	_, err = ss.Create(ctx, connect.NewRequest(&sbxv1.CreateSessionRequest{LeaseSeconds: -5}))
	wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonInvalidSpec)
}
