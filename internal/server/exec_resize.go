package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// ResizeExec implements SandboxService.ResizeExec.
func (s *sandboxService) ResizeExec(ctx context.Context, req *connect.Request[sbxv1.ResizeExecRequest]) (*connect.Response[sbxv1.ResizeExecResponse], error) {
	r := req.Msg
	if err := checkExecRef(r.GetSandboxId(), r.GetExecId()); err != nil {
		return nil, err
	}
	if err := checkSize(r.GetRows(), r.GetCols()); err != nil {
		return nil, err
	}
	err := s.withAgent(ctx, r.GetSandboxId(), func(a sandbox.Agent) error {
		return a.Resize(ctx, r.GetExecId(), uint16(r.GetRows()), uint16(r.GetCols()))
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.ResizeExecResponse{}), nil
}

func checkSize(rows, cols uint32) error {
	if rows == 0 || cols == 0 || rows > 0xffff || cols > 0xffff {
		return invalidf("window size %dx%d is out of range: rows and cols must be 1 to 65535", rows, cols)
	}
	return nil
}
