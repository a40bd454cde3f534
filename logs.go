package sbx

import (
	"context"
	"io"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// LogOptions select part of a sandbox's main-command log.
type LogOptions struct {
	// Follow keeps streaming new output until the main command exits or
	// ctx ends.
	Follow bool
	// Tail starts with the last Tail lines; 0 means all that is kept.
	Tail int
}

// Logs copies the main command's output to stdout and stderr (either may be
// nil to drop that stream) until the log's end, or with Follow until the
// main command exits. It waits until the sandbox has started; the log of a
// sandbox that has ended stays readable while the server keeps it.
func (s *Sandbox) Logs(ctx context.Context, stdout, stderr io.Writer, opts LogOptions) error {
	if _, err := s.waitStarted(ctx); err != nil {
		return err
	}
	if opts.Tail < 0 {
		return errorf(ErrInvalidArgument, "INVALID_ARGUMENT", "tail %d is negative: give a line count of 0 or more", opts.Tail)
	}
	stream, err := s.c.sandboxes.StreamLogs(ctx, connect.NewRequest(&sbxv1.StreamLogsRequest{
		SandboxId: s.ID(), Follow: opts.Follow, TailLines: int32(min(opts.Tail, 1<<30)),
	}))
	if err != nil {
		return s.c.fromWire(err)
	}
	defer stream.Close()
	for stream.Receive() {
		var w io.Writer
		var data []byte
		switch d := stream.Msg().GetData().(type) {
		case *sbxv1.StreamLogsResponse_Stdout:
			w, data = stdout, d.Stdout
		case *sbxv1.StreamLogsResponse_Stderr:
			w, data = stderr, d.Stderr
		}
		if w == nil {
			continue
		}
		if _, err := w.Write(data); err != nil {
			return &Error{Kind: ErrUnavailable, Reason: "OUTPUT_WRITE_FAILED", Message: "writing the log failed", Err: err}
		}
	}
	return s.c.fromWire(stream.Err())
}
