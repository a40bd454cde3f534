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

// readChunk is the size of ReadFile's messages (at most 1 MiB, as documented).
const readChunk = 256 << 10

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
		buf := make([]byte, readChunk)
		for {
			n, err := io.ReadFull(rc, buf)
			if n > 0 {
				if serr := stream.Send(&sbxv1.ReadFileResponse{Data: buf[:n]}); serr != nil {
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
