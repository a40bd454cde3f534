package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"connectrpc.com/connect"

	agentv1 "github.com/sbx-run/sbx/gen/sbx/agent/v1"
	"github.com/sbx-run/sbx/internal/chunkcodec"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// errNoCommit is why a write stream that ended without its commit message
// leaves the old file.
var errNoCommit = errors.New("the stream ended before its commit message")

// Write receives a header, data chunks and a commit, into a temporary file
// that replaces the target only on commit (see writeAtomic).
func (fsv *filesystemService) Write(ctx context.Context, stream *connect.ClientStream[agentv1.WriteRequest]) (*connect.Response[agentv1.WriteResponse], error) {
	if !stream.Receive() {
		if err := stream.Err(); err != nil {
			return nil, err
		}
		return nil, toWire(sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "write: the stream is empty; send a header first"))
	}
	hdr := stream.Msg().GetHeader()
	if hdr == nil {
		return nil, toWire(sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "write: the first message must be the header with the path"))
	}
	path, err := cleanPath(hdr.GetPath())
	if err != nil {
		return nil, toWire(err)
	}
	mode := sandbox.FileModeFromUnix(hdr.GetMode())
	if mode.Perm() == 0 {
		mode |= 0o644
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, toWire(sandbox.FailedPrecondition(sandbox.ReasonIsDirectory, "write %s: the path is a directory", path))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, toWire(fsError("write", path, err))
	}
	defer fsv.s.trimSoon()
	limit := fsv.s.cfg.MaxFileBytes
	var written int64
	var failure error // an error for the caller, as opposed to an fs error
	err = writeAtomic(path, mode, false, func(f *os.File) error {
		for stream.Receive() {
			switch m := stream.Msg().GetMsg().(type) {
			case *agentv1.WriteRequest_Data:
				if len(m.Data) > maxChunk {
					failure = sandbox.InvalidArgument(sandbox.ReasonFileTooLarge, "write %s: a chunk of %d bytes is over the limit of %d", path, len(m.Data), maxChunk)
					return failure
				}
				written += int64(len(m.Data))
				if limit > 0 && written > limit {
					failure = sandbox.InvalidArgument(sandbox.ReasonFileTooLarge, "write %s: the file is over the limit of %d bytes", path, limit)
					return failure
				}
				_, err := f.Write(m.Data)
				chunkcodec.Put(m.Data)
				if err != nil {
					return err
				}
			case *agentv1.WriteRequest_Commit_:
				if m.Commit.GetSize() != written {
					failure = sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "write %s: the commit says %d bytes but %d arrived; the old file is kept", path, m.Commit.GetSize(), written)
					return failure
				}
				if stream.Receive() {
					failure = sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "write %s: a message followed the commit; the old file is kept", path)
					return failure
				}
				return stream.Err()
			default:
				failure = sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "write %s: only data and a commit may follow the header", path)
				return failure
			}
		}
		if err := stream.Err(); err != nil {
			failure = err
			return err
		}
		failure = sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "write %s: %w; the old file is kept", path, errNoCommit)
		return failure
	})
	if failure != nil {
		return nil, toWire(failure)
	}
	if err != nil {
		return nil, toWire(fsError("write", path, err))
	}
	return connect.NewResponse(&agentv1.WriteResponse{Size: written}), nil
}
