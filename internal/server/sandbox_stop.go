package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// Stop implements SandboxService.Stop.
func (s *sandboxService) Stop(ctx context.Context, req *connect.Request[sbxv1.StopSandboxRequest]) (*connect.Response[sbxv1.StopSandboxResponse], error) {
	grace := seconds(0)
	if req.Msg.GracePeriodSeconds != nil {
		grace = seconds(int64(req.Msg.GetGracePeriodSeconds()))
	}
	sb, err := s.m.Stop(ctx, tenant(ctx), req.Msg.GetId(), grace)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.StopSandboxResponse{Sandbox: s.sandboxToWire(sb)}), nil
}
