package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// SignalExec implements SandboxService.SignalExec.
func (s *sandboxService) SignalExec(ctx context.Context, req *connect.Request[sbxv1.SignalExecRequest]) (*connect.Response[sbxv1.SignalExecResponse], error) {
	r := req.Msg
	if err := checkExecRef(r.GetSandboxId(), r.GetExecId()); err != nil {
		return nil, err
	}
	if !signalRE.MatchString(r.GetSignal()) {
		return nil, invalidf("signal %q is malformed: give a name like SIGTERM or TERM, or a number like 15", truncateStr(r.GetSignal(), 32))
	}
	err := s.withAgent(ctx, r.GetSandboxId(), func(a sandbox.Agent) error {
		return a.Signal(ctx, r.GetExecId(), r.GetSignal())
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.SignalExecResponse{}), nil
}

func truncateStr(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
