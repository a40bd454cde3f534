package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// MakeDir implements SandboxService.MakeDir.
func (s *sandboxService) MakeDir(ctx context.Context, req *connect.Request[sbxv1.MakeDirRequest]) (*connect.Response[sbxv1.MakeDirResponse], error) {
	r := req.Msg
	if err := lifecycle.ValidatePath("path", r.GetPath()); err != nil {
		return nil, err
	}
	if r.GetMode() > 0o7777 {
		return nil, invalidf("mode %o has bits beyond the permission, setuid, setgid and sticky bits (at most 7777)", r.GetMode())
	}
	mode := fileMode(r.GetMode())
	if mode == 0 {
		mode = 0o755
	}
	err := s.withAgent(ctx, r.GetSandboxId(), func(a sandbox.Agent) error {
		return a.MkdirAll(ctx, r.GetPath(), mode)
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.MakeDirResponse{}), nil
}
