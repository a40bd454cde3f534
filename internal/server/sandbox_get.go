package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// Get implements SandboxService.Get.
func (s *sandboxService) Get(ctx context.Context, req *connect.Request[sbxv1.GetSandboxRequest]) (*connect.Response[sbxv1.GetSandboxResponse], error) {
	sb, err := s.m.Get(ctx, tenant(ctx), req.Msg.GetId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.GetSandboxResponse{Sandbox: s.sandboxToWire(sb)}), nil
}
