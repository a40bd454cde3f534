package server

import (
	"context"
	"errors"
	"io"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/chunkpool"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// readChunk is the size of ReadFile's messages: the documented maximum, 1
// MiB, which is also the agent's chunk size.
const readChunk = maxChunk

// ReadFile implements SandboxService.ReadFile.
func (s *sandboxService) ReadFile(ctx context.Context, req *connect.Request[sbxv1.ReadFileRequest], stream *connect.ServerStream[sbxv1.ReadFileResponse]) error {
	r := req.Msg
	if err := lifecycle.ValidatePath("path", r.GetPath()); err != nil {
		return err
	}
	return s.withAgent(ctx, r.GetSandboxId(), func(a sandbox.Agent) error {
		rc, err := a.ReadFile(ctx, r.GetPath())
		if err != nil {
			return err
		}
		defer rc.Close()
		out := chunkSender{stream}
		if cs, ok := rc.(agent.ChunkSource); ok {
			// The agent's chunks go out as they came: no buffer, no copy.
			_, err = cs.WriteChunksTo(out)
			return err
		}
		buf := chunkpool.Get(readChunk)[:readChunk]
		defer chunkpool.Put(buf)
		for {
			n, err := io.ReadFull(rc, buf)
			if n > 0 {
				if _, serr := out.Write(buf[:n]); serr != nil {
					return serr
				}
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			if err != nil {
				return err
			}
		}
	})
}

// chunkSender sends what it is given as ReadFile messages of at most
// readChunk bytes. Send marshals at once, so the caller may reuse p.
type chunkSender struct {
	stream *connect.ServerStream[sbxv1.ReadFileResponse]
}

func (c chunkSender) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), readChunk)
		if err := c.stream.Send(&sbxv1.ReadFileResponse{Data: p[:n]}); err != nil {
			return written, err
		}
		written += n
		p = p[n:]
	}
	return written, nil
}
