package agent

import (
	"context"
	"io"
	"os"

	"connectrpc.com/connect"

	agentv1 "github.com/sbx-run/sbx/gen/sbx/agent/v1"
	"github.com/sbx-run/sbx/internal/chunkcodec"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Chunk sizes of file transfers.
const (
	minChunk = 64 << 10
	maxChunk = 1 << 20
	// defaultChunk is the largest chunk: per message costs (framing,
	// wake-ups of the reader, syscalls) then weigh least.
	defaultChunk = maxChunk
)

// wireCodec is the agent's protobuf codec on both ends: file chunks are
// decoded into pooled buffers (see chunkcodec), which their receiver hands
// back.
var wireCodec = chunkcodec.New(
	chunkcodec.Bytes(1, func(m *agentv1.ReadResponse, data []byte) { m.Data = data }),
	chunkcodec.Bytes(2, func(m *agentv1.WriteRequest, data []byte) { m.Msg = &agentv1.WriteRequest_Data{Data: data} }),
)

// filesystemService implements FilesystemService.
type filesystemService struct{ s *Server }

// Read streams a regular file in chunks, with one buffer per call.
func (fsv *filesystemService) Read(ctx context.Context, req *connect.Request[agentv1.ReadRequest], stream *connect.ServerStream[agentv1.ReadResponse]) error {
	path, err := cleanPath(req.Msg.GetPath())
	if err != nil {
		return toWire(err)
	}
	size := int(req.Msg.GetChunkSize())
	switch {
	case size == 0:
		size = defaultChunk
	case size < minChunk || size > maxChunk:
		return toWire(sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "chunk size %d is out of range; give 0 or %d to %d", size, minChunk, maxChunk))
	}
	f, err := os.Open(path)
	if err != nil {
		return toWire(fsError("read", path, err))
	}
	defer f.Close()
	defer fsv.s.trimSoon()
	fi, err := f.Stat()
	if err != nil {
		return toWire(fsError("read", path, err))
	}
	if fi.IsDir() {
		return toWire(sandbox.FailedPrecondition(sandbox.ReasonIsDirectory, "read %s: the path is a directory; list it instead", path))
	}
	var buf []byte
	if fi.Size() > 0 && int64(size) > fi.Size() {
		buf = make([]byte, fi.Size()) // small files need no big buffer
	} else {
		buf = chunkcodec.Get(size)[:size]
		defer chunkcodec.Put(buf)
	}
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			if serr := stream.Send(&agentv1.ReadResponse{Data: buf[:n]}); serr != nil {
				return serr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return toWire(fsError("read", path, err))
		}
		if ctx.Err() != nil {
			return toWire(ctx.Err())
		}
	}
}
