package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Remove implements SandboxService.Remove.
func (s *sandboxService) Remove(ctx context.Context, req *connect.Request[sbxv1.RemoveRequest]) (*connect.Response[sbxv1.RemoveResponse], error) {
	r := req.Msg
	if err := lifecycle.ValidatePath("path", r.GetPath()); err != nil {
		return nil, err
	}
	if r.GetPath() == "/" {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "refusing to remove /: name a path below it")
	}
	err := s.withAgent(ctx, r.GetSandboxId(), func(a sandbox.Agent) error {
		return a.Remove(ctx, r.GetPath(), r.GetRecursive())
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.RemoveResponse{}), nil
}
