package sbx

import (
	"bytes"
	"context"
	"io"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// LogOptions select part of a sandbox's main-command log.
type LogOptions struct {
	// Follow keeps streaming new output until the main command exits or
	// ctx ends.
	Follow bool
	// Tail starts with the last Tail lines; 0 means all that is kept.
	Tail int
	// Since, when not zero, starts with the first line the sandbox read at
	// or after it (times are kept to the millisecond). With Tail, the
	// later start wins.
	Since time.Time
	// Timestamps prefixes every line with the time the sandbox read its
	// first byte, in LogTimeFormat (UTC) and a space, like docker logs -t.
	Timestamps bool
}

// LogTimeFormat is the format of the times LogOptions.Timestamps prefixes:
// RFC 3339 with nanoseconds, fixed width, so that the prefixes sort as text.
const LogTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

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
	req := &sbxv1.StreamLogsRequest{
		SandboxId: s.ID(), Follow: opts.Follow, TailLines: int32(min(opts.Tail, 1<<30)), Timestamps: opts.Timestamps,
	}
	if !opts.Since.IsZero() {
		req.Since = timestamppb.New(opts.Since)
	}
	stream, err := s.c.sandboxes.StreamLogs(ctx, connect.NewRequest(req))
	if err != nil {
		return s.c.fromWire(err)
	}
	defer stream.Close()
	if opts.Timestamps {
		stdout, stderr = stampWriter(stdout), stampWriter(stderr)
	}
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
		var err error
		if st, ok := w.(*stamper); ok {
			err = st.write(data, stream.Msg().GetTime())
		} else {
			_, err = w.Write(data)
		}
		if err != nil {
			return &Error{Kind: ErrUnavailable, Reason: "OUTPUT_WRITE_FAILED", Message: "writing the log failed", Err: err}
		}
	}
	return s.c.fromWire(stream.Err())
}

// stamper prefixes each line written to w with the time of the message
// holding its first byte.
type stamper struct {
	w       io.Writer
	midLine bool // the last write did not end its line
	buf     []byte
}

func stampWriter(w io.Writer) io.Writer {
	if w == nil {
		return nil
	}
	return &stamper{w: w}
}

func (s *stamper) Write(b []byte) (int, error) { return len(b), s.write(b, nil) }

// write writes data, every line it starts prefixed with at (a line whose
// time is unknown gets none).
func (s *stamper) write(data []byte, at *timestamppb.Timestamp) error {
	var prefix []byte
	if at != nil {
		prefix = at.AsTime().UTC().AppendFormat(nil, LogTimeFormat)
		prefix = append(prefix, ' ')
	}
	s.buf = s.buf[:0]
	for len(data) > 0 {
		if !s.midLine {
			s.buf = append(s.buf, prefix...)
		}
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			s.buf = append(s.buf, data...)
			s.midLine = true
			break
		}
		s.buf = append(s.buf, data[:i+1]...)
		s.midLine = false
		data = data[i+1:]
	}
	_, err := s.w.Write(s.buf)
	return err
}
