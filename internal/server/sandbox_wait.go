package server

import (
	"context"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Wait bounds.
const (
	defaultWaitTimeout = 60 * time.Second
	maxWaitTimeout     = time.Hour
)

// Wait implements SandboxService.Wait.
func (s *sandboxService) Wait(ctx context.Context, req *connect.Request[sbxv1.WaitSandboxRequest]) (*connect.Response[sbxv1.WaitSandboxResponse], error) {
	r := req.Msg
	timeout := seconds(int64(r.GetTimeoutSeconds()))
	switch {
	case timeout == 0:
		timeout = defaultWaitTimeout
	case timeout < 0 || timeout > maxWaitTimeout:
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "timeout_seconds %d is out of range: give 0 (default 60) to %d", r.GetTimeoutSeconds(), int(maxWaitTimeout/time.Second))
	}
	until := lifecycle.UntilTerminal
	switch r.GetUntil() {
	case sbxv1.WaitCondition_WAIT_CONDITION_RUNNING:
		until = lifecycle.UntilRunning
	case sbxv1.WaitCondition_WAIT_CONDITION_UNSPECIFIED, sbxv1.WaitCondition_WAIT_CONDITION_TERMINAL:
	default:
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "until %v is unknown: use WAIT_CONDITION_RUNNING or WAIT_CONDITION_TERMINAL", r.GetUntil())
	}
	sb, reached, err := s.m.Wait(ctx, tenant(ctx), r.GetId(), until, timeout)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.WaitSandboxResponse{Sandbox: s.sandboxToWire(sb), TimedOut: !reached}), nil
}
