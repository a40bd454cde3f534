package agent

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
	"github.com/sbx-run/sbx/internal/agentwire"
	"github.com/sbx-run/sbx/internal/chunkpool"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// maxChunk is the largest piece of file data the agent and its client
// read or write in one go, and the largest stdin write in one call.
const maxChunk = 1 << 20

// filesystemService implements FilesystemService.
type filesystemService struct{ s *Server }

// ReadFD is Read, except that a regular file of at least one byte goes as
// its open descriptor with the ReadResponse (agentwire.ServerCall.SendFD),
// and no Data frames: the host then reads the file itself. Where the
// connection cannot pass descriptors, it answers as Read.
func (fsv *filesystemService) ReadFD(ctx context.Context, req *agentpb.ReadRequest, call *agentwire.ServerCall) error {
	return fsv.read(ctx, req, call, true)
}

// Read sends a file: a ReadResponse with its size, then its bytes as Data
// frames. A regular file's go with sendfile(2), in the size announced (a
// file that shrinks meanwhile cuts the transfer, one that grows is cut at
// the size); anything else (a FIFO, a file under /proc that reports size
// 0) is read to its end, 1 MiB at a time, with size -1. Paths resolve in
// the agent's own mount namespace, the sandbox's.
func (fsv *filesystemService) Read(ctx context.Context, req *agentpb.ReadRequest, call *agentwire.ServerCall) error {
	return fsv.read(ctx, req, call, false)
}

func (fsv *filesystemService) read(ctx context.Context, req *agentpb.ReadRequest, call *agentwire.ServerCall, byFD bool) error {
	path, err := cleanPath(req.GetPath(), fsv.s.workDir())
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fsError("read", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fsError("read", path, err)
	}
	if fi.IsDir() {
		return sandbox.FailedPrecondition(sandbox.ReasonIsDirectory, "read %s: the path is a directory; list it instead", path)
	}
	size := fi.Size()
	if !fi.Mode().IsRegular() || size == 0 {
		size = -1
	}
	if byFD && size > 0 {
		err := call.SendFD(&agentpb.ReadResponse{Size: size}, f)
		if !errors.Is(err, agentwire.ErrNoFD) {
			return err
		}
	}
	defer fsv.s.trimSoon()
	if err := call.Send(&agentpb.ReadResponse{Size: size}); err != nil {
		return err
	}
	if size >= 0 {
		return call.SendFile(f, size)
	}
	buf := chunkpool.Get(maxChunk)[:maxChunk]
	defer chunkpool.Put(buf)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if serr := call.SendData(buf[:n]); serr != nil {
				return serr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fsError("read", path, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}
