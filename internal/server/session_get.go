package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// Get implements SessionService.Get.
func (s *sessionService) Get(ctx context.Context, req *connect.Request[sbxv1.GetSessionRequest]) (*connect.Response[sbxv1.GetSessionResponse], error) {
	sess, err := s.m.GetSession(ctx, tenant(ctx), req.Msg.GetId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.GetSessionResponse{Session: sessionToWire(sess)}), nil
}
