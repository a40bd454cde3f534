package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Exec implements SandboxService.Exec.
func (s *sandboxService) Exec(ctx context.Context, req *connect.Request[sbxv1.ExecRequest], stream *connect.ServerStream[sbxv1.ExecEvent]) error {
	spec, limit, err := s.execSpec(req.Msg)
	if err != nil {
		return err
	}
	return s.withAgent(ctx, req.Msg.GetSandboxId(), func(a sandbox.Agent) error {
		p, err := a.Exec(ctx, spec)
		if err != nil {
			return err
		}
		defer p.Close()
		return pumpExec(p, limit, stream.Send)
	})
}
