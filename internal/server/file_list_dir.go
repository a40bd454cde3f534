package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// ListDir implements SandboxService.ListDir.
func (s *sandboxService) ListDir(ctx context.Context, req *connect.Request[sbxv1.ListDirRequest]) (*connect.Response[sbxv1.ListDirResponse], error) {
	r := req.Msg
	if err := lifecycle.ValidatePath("path", r.GetPath()); err != nil {
		return nil, err
	}
	var entries []sandbox.FileInfo
	err := s.withAgent(ctx, r.GetSandboxId(), func(a sandbox.Agent) (err error) {
		entries, err = a.ListDir(ctx, r.GetPath())
		return err
	})
	if err != nil {
		return nil, err
	}
	resp := &sbxv1.ListDirResponse{}
	for _, fi := range entries {
		resp.Entries = append(resp.Entries, fileInfoToWire(fi))
	}
	return connect.NewResponse(resp), nil
}
