package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// CloseStdin implements SandboxService.CloseStdin.
func (s *sandboxService) CloseStdin(ctx context.Context, req *connect.Request[sbxv1.CloseStdinRequest]) (*connect.Response[sbxv1.CloseStdinResponse], error) {
	r := req.Msg
	if err := checkExecRef(r.GetSandboxId(), r.GetExecId()); err != nil {
		return nil, err
	}
	err := s.withAgent(ctx, r.GetSandboxId(), func(a sandbox.Agent) error {
		return a.CloseStdin(ctx, r.GetExecId())
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.CloseStdinResponse{}), nil
}
