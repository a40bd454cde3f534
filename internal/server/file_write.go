package server

import (
	"context"
	"io"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/chunkpool"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// WriteFile implements SandboxService.WriteFile: the header message first,
// then data chunks passed on to the agent as they arrive; the agent
// replaces the file only once all of it arrived.
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
		return nil, invalidf("mode %o has bits beyond the permission, setuid, setgid and sticky bits (at most 7777)", h.GetMode())
	}
	mode := fileMode(h.GetMode())
	if mode == 0 {
		mode = 0o644
	}
	src := &uploadSource{stream: stream}
	err := s.withAgent(ctx, h.GetSandboxId(), func(a sandbox.Agent) error {
		return a.WriteFile(ctx, h.GetPath(), mode, src)
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.WriteFileResponse{Size: src.size}), nil
}

// uploadSource is the content of a WriteFile stream after its header. It
// is an agent.ChunkSource, so the agent client sends each message's data on
// as it is (in the handler's goroutine, with no pipe or copy); Read serves
// any other Agent. A stream error or a bad message is its error, which
// makes the agent drop the write.
type uploadSource struct {
	stream *connect.ClientStream[sbxv1.WriteFileRequest]
	size   int64
	chunk  []byte // the current message's data, handed back once used
	rest   []byte // the unread part of chunk (Read)
	err    error
}

// next receives the next data message into chunk; at the end of the
// stream it returns io.EOF.
func (u *uploadSource) next() error {
	chunkpool.Put(u.chunk)
	u.chunk, u.rest = nil, nil
	if u.err != nil {
		return u.err
	}
	for u.stream.Receive() {
		m := u.stream.Msg()
		if m.GetHeader() != nil {
			u.err = invalidf("only the first WriteFile message may carry the header")
			return u.err
		}
		data := m.GetData()
		if len(data) > maxChunk {
			u.err = sandbox.InvalidArgument(sandbox.ReasonFileTooLarge, "a WriteFile chunk is %d bytes: send at most %d per message", len(data), maxChunk)
			return u.err
		}
		if len(data) == 0 {
			continue
		}
		u.size += int64(len(data))
		u.chunk, u.rest = data, data
		return nil
	}
	if u.err = u.stream.Err(); u.err == nil {
		u.err = io.EOF
	}
	return u.err
}

// WriteChunksTo implements agent.ChunkSource.
func (u *uploadSource) WriteChunksTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if err := u.next(); err != nil {
			if err == io.EOF {
				return total, nil
			}
			return total, err
		}
		n, err := w.Write(u.chunk)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}

func (u *uploadSource) Read(p []byte) (int, error) {
	for len(u.rest) == 0 {
		if err := u.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, u.rest)
	u.rest = u.rest[n:]
	return n, nil
}
