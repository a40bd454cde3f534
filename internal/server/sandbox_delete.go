package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// Delete implements SandboxService.Delete.
func (s *sandboxService) Delete(ctx context.Context, req *connect.Request[sbxv1.DeleteSandboxRequest]) (*connect.Response[sbxv1.DeleteSandboxResponse], error) {
	if err := s.m.Delete(ctx, tenant(ctx), req.Msg.GetId()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.DeleteSandboxResponse{}), nil
}
