package server

import (
	"context"
	"errors"
	"io"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// ExecStream implements SandboxService.ExecStream: the first client message
// starts the process; later ones carry stdin, stdin close, signals and
// resizes, applied in order while the events stream back.
func (s *sandboxService) ExecStream(ctx context.Context, stream *connect.BidiStream[sbxv1.ExecStreamRequest, sbxv1.ExecEvent]) error {
	first, err := stream.Receive()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return invalidf("the first ExecStream message must carry start")
	}
	spec, limit, err := s.execSpec(start)
	if err != nil {
		return err
	}
	return s.withAgent(ctx, start.GetSandboxId(), func(a sandbox.Agent) error {
		p, err := a.Exec(ctx, spec)
		if err != nil {
			return err
		}
		defer p.Close()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go s.forwardInput(ctx, a, p.ID(), stream)
		return pumpExec(p, limit, stream.Send)
	})
}

// forwardInput applies client messages to the process until the client
// half-closes, ctx ends, or a message fails (the failure is logged: the
// event stream still reports how the process ends).
func (s *sandboxService) forwardInput(ctx context.Context, a sandbox.Agent, execID string, stream *connect.BidiStream[sbxv1.ExecStreamRequest, sbxv1.ExecEvent]) {
	for {
		msg, err := stream.Receive()
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				s.log.Debug("exec stream input ended", "exec", execID, "error", err)
			}
			return
		}
		switch m := msg.GetMsg().(type) {
		case *sbxv1.ExecStreamRequest_Stdin:
			if len(m.Stdin) > maxChunk {
				err = invalidf("stdin message is %d bytes: send at most %d", len(m.Stdin), maxChunk)
				break
			}
			err = a.WriteStdin(ctx, execID, m.Stdin)
		case *sbxv1.ExecStreamRequest_CloseStdin:
			err = a.CloseStdin(ctx, execID)
		case *sbxv1.ExecStreamRequest_Signal:
			if !signalRE.MatchString(m.Signal) {
				err = invalidf("signal %q is malformed", truncateStr(m.Signal, 32))
				break
			}
			err = a.Signal(ctx, execID, m.Signal)
		case *sbxv1.ExecStreamRequest_Resize_:
			if err = checkSize(m.Resize.GetRows(), m.Resize.GetCols()); err == nil {
				err = a.Resize(ctx, execID, uint16(m.Resize.GetRows()), uint16(m.Resize.GetCols()))
			}
		default:
			err = invalidf("only the first ExecStream message may carry start")
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("exec stream input", "exec", execID, "error", err)
		}
	}
}
