package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// Heartbeat implements SessionService.Heartbeat.
func (s *sessionService) Heartbeat(ctx context.Context, req *connect.Request[sbxv1.HeartbeatSessionRequest]) (*connect.Response[sbxv1.HeartbeatSessionResponse], error) {
	sess, err := s.m.Heartbeat(ctx, tenant(ctx), req.Msg.GetId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.HeartbeatSessionResponse{Session: sessionToWire(sess)}), nil
}
