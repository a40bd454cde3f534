package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// AttachExec implements SandboxService.AttachExec.
func (s *sandboxService) AttachExec(ctx context.Context, req *connect.Request[sbxv1.AttachExecRequest], stream *connect.ServerStream[sbxv1.ExecEvent]) error {
	r := req.Msg
	if err := checkExecRef(r.GetSandboxId(), r.GetExecId()); err != nil {
		return err
	}
	return s.withAgent(ctx, r.GetSandboxId(), func(a sandbox.Agent) error {
		p, err := a.Attach(ctx, r.GetExecId())
		if err != nil {
			return err
		}
		defer p.Close()
		return pumpExec(p, s.outputLimit, stream.Send)
	})
}
