package fakeapi

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
)

// SessionService.

func (f *Server) sessionCreate(_ context.Context, req *connect.Request[sbxv1.CreateSessionRequest]) (*connect.Response[sbxv1.CreateSessionResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	lease := req.Msg.GetLeaseSeconds()
	if lease == 0 {
		lease = 60
	}
	s := &sbxv1.Session{Id: fmt.Sprintf("ss-%d", f.next), Defaults: req.Msg.GetDefaults(), LeaseSeconds: lease, CreatedAt: timestamppb.Now()}
	f.sessions[s.Id] = s
	return connect.NewResponse(&sbxv1.CreateSessionResponse{Session: s}), nil
}

func (f *Server) heartbeat(_ context.Context, req *connect.Request[sbxv1.HeartbeatSessionRequest]) (*connect.Response[sbxv1.HeartbeatSessionResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[req.Msg.GetId()]
	if !ok {
		return nil, fakeErr(connect.CodeNotFound, "SESSION_NOT_FOUND", "no session", 0)
	}
	if s.ClosedAt != nil {
		return nil, fakeErr(connect.CodeFailedPrecondition, "SESSION_CLOSED", "session closed", 0)
	}
	f.heartbeats[s.Id]++
	return connect.NewResponse(&sbxv1.HeartbeatSessionResponse{Session: s}), nil
}

func (f *Server) sessionClose(_ context.Context, req *connect.Request[sbxv1.CloseSessionRequest]) (*connect.Response[sbxv1.CloseSessionResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[req.Msg.GetId()]
	if !ok {
		return nil, fakeErr(connect.CodeNotFound, "SESSION_NOT_FOUND", "no session", 0)
	}
	if s.ClosedAt == nil {
		s.ClosedAt, s.CloseReason = timestamppb.Now(), "closed by client"
		for _, sb := range f.sandboxes {
			if sb.w.SessionId == s.Id && sb.w.State < sbxv1.SandboxState_SANDBOX_STATE_COMPLETED {
				f.end(sb, sbxv1.SandboxState_SANDBOX_STATE_TERMINATED, "session closed", nil)
			}
		}
	}
	return connect.NewResponse(&sbxv1.CloseSessionResponse{Session: s}), nil
}

// fakeSessions is the SessionService half of the fake (its method names
// clash with SandboxService's).
type fakeSessions struct {
	sbxv1connect.UnimplementedSessionServiceHandler
	f *Server
}

func (s fakeSessions) Create(ctx context.Context, req *connect.Request[sbxv1.CreateSessionRequest]) (*connect.Response[sbxv1.CreateSessionResponse], error) {
	return s.f.sessionCreate(ctx, req)
}

func (s fakeSessions) Heartbeat(ctx context.Context, req *connect.Request[sbxv1.HeartbeatSessionRequest]) (*connect.Response[sbxv1.HeartbeatSessionResponse], error) {
	return s.f.heartbeat(ctx, req)
}

func (s fakeSessions) Close(ctx context.Context, req *connect.Request[sbxv1.CloseSessionRequest]) (*connect.Response[sbxv1.CloseSessionResponse], error) {
	return s.f.sessionClose(ctx, req)
}

// Creates returns how many sandboxes were created.
func (f *Server) Creates() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.creates
}

// Heartbeats returns how many heartbeats session id received.
func (f *Server) Heartbeats(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.heartbeats[id]
}
