package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Stat implements SandboxService.Stat.
func (s *sandboxService) Stat(ctx context.Context, req *connect.Request[sbxv1.StatRequest]) (*connect.Response[sbxv1.StatResponse], error) {
	r := req.Msg
	if err := lifecycle.ValidatePath("path", r.GetPath()); err != nil {
		return nil, err
	}
	var fi sandbox.FileInfo
	err := s.withAgent(ctx, r.GetSandboxId(), func(a sandbox.Agent) (err error) {
		fi, err = a.Stat(ctx, r.GetPath())
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.StatResponse{Info: fileInfoToWire(fi)}), nil
}
