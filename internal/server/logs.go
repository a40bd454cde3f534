package server

import (
	"context"
	"errors"
	"io"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// maxTailLines bounds StreamLogs' tail_lines.
const maxTailLines = 1_000_000

// StreamLogs implements SandboxService.StreamLogs. It also serves a sandbox
// that ended recently, while its container is kept.
func (s *sandboxService) StreamLogs(ctx context.Context, req *connect.Request[sbxv1.StreamLogsRequest], stream *connect.ServerStream[sbxv1.StreamLogsResponse]) error {
	r := req.Msg
	if err := lifecycle.ValidateID("sandbox_id", r.GetSandboxId()); err != nil {
		return err
	}
	if r.GetTailLines() < 0 || r.GetTailLines() > maxTailLines {
		return invalidf("tail_lines %d is out of range: give 0 (all) to %d", r.GetTailLines(), maxTailLines)
	}
	opts := sandbox.LogOptions{Tail: int(r.GetTailLines()), Follow: r.GetFollow(), Timestamps: r.GetTimestamps()}
	if r.Since != nil {
		if err := r.GetSince().CheckValid(); err != nil {
			return invalidf("since: %v; give a time between years 1 and 9999", err)
		}
		opts.Since = r.GetSince().AsTime()
	}
	a, err := s.m.LogAgent(ctx, tenant(ctx), r.GetSandboxId())
	if err != nil {
		return err
	}
	defer a.Close()
	logs, err := a.Logs(ctx, opts)
	if err != nil {
		return err
	}
	defer logs.Close()
	for {
		o, err := logs.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		msg := &sbxv1.StreamLogsResponse{Data: &sbxv1.StreamLogsResponse_Stdout{Stdout: o.Data}}
		if o.Stream == sandbox.Stderr {
			msg.Data = &sbxv1.StreamLogsResponse_Stderr{Stderr: o.Data}
		}
		if opts.Timestamps && !o.At.IsZero() {
			msg.Time = timestamppb.New(o.At)
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
}
