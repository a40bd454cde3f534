package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// Close implements SessionService.Close.
func (s *sessionService) Close(ctx context.Context, req *connect.Request[sbxv1.CloseSessionRequest]) (*connect.Response[sbxv1.CloseSessionResponse], error) {
	sess, err := s.m.CloseSession(ctx, tenant(ctx), req.Msg.GetId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.CloseSessionResponse{Session: sessionToWire(sess)}), nil
}
