package server

import (
	"context"
	"errors"
	"io"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// WriteFile implements SandboxService.WriteFile: the header message first,
// then data chunks piped to the agent, which replaces the file only once
// all of it arrived.
func (s *sandboxService) WriteFile(ctx context.Context, stream *connect.ClientStream[sbxv1.WriteFileRequest]) (*connect.Response[sbxv1.WriteFileResponse], error) {
	if !stream.Receive() {
		if err := stream.Err(); err != nil {
			return nil, err
		}
		return nil, invalidf("WriteFile got no messages: send the header first")
	}
	h := stream.Msg().GetHeader()
	if h == nil {
		return nil, invalidf("the first WriteFile message must carry the header (sandbox_id, path, mode)")
	}
	if err := lifecycle.ValidatePath("path", h.GetPath()); err != nil {
		return nil, err
	}
	if h.GetMode() > 0o7777 {
		return nil, invalidf("mode %o has bits beyond the permission bits (at most 7777)", h.GetMode())
	}
	mode := fileMode(h.GetMode())
	if mode == 0 {
		mode = 0o644
	}
	var size int64
	err := s.withAgent(ctx, h.GetSandboxId(), func(a sandbox.Agent) error {
		pr, pw := io.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			pw.CloseWithError(copyChunks(stream, pw, &size))
		}()
		err := a.WriteFile(ctx, h.GetPath(), mode, pr)
		// If the agent gave up early, fail the copier's next write; wait for
		// it so that the stream is not used after the handler returns.
		pr.CloseWithError(errors.New("write aborted"))
		<-done
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.WriteFileResponse{Size: size}), nil
}

// copyChunks writes every data message of stream to w; a stream error or a
// bad message is returned (and so aborts the agent's write).
func copyChunks(stream *connect.ClientStream[sbxv1.WriteFileRequest], w io.Writer, size *int64) error {
	for stream.Receive() {
		m := stream.Msg()
		if m.GetHeader() != nil {
			return invalidf("only the first WriteFile message may carry the header")
		}
		data := m.GetData()
		if len(data) > maxChunk {
			return sandbox.InvalidArgument(sandbox.ReasonFileTooLarge, "a WriteFile chunk is %d bytes: send at most %d per message", len(data), maxChunk)
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		*size += int64(len(data))
	}
	return stream.Err()
}
