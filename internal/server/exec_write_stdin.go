package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// WriteStdin implements SandboxService.WriteStdin.
func (s *sandboxService) WriteStdin(ctx context.Context, req *connect.Request[sbxv1.WriteStdinRequest]) (*connect.Response[sbxv1.WriteStdinResponse], error) {
	r := req.Msg
	if err := checkExecRef(r.GetSandboxId(), r.GetExecId()); err != nil {
		return nil, err
	}
	if len(r.GetData()) > maxChunk {
		return nil, invalidf("stdin data is %d bytes: send at most %d per call", len(r.GetData()), maxChunk)
	}
	err := s.withAgent(ctx, r.GetSandboxId(), func(a sandbox.Agent) error {
		return a.WriteStdin(ctx, r.GetExecId(), r.GetData())
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.WriteStdinResponse{}), nil
}
