package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
	"github.com/sbx-run/sbx/internal/agentwire"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Write receives a header, then the content as Data frames, into a
// temporary file that replaces the target only once the request ended
// with all of it (see writeAtomic): a cut connection, a short or long
// content, or any failure leaves the old file. The bytes of each frame
// past what the connection had buffered go from the socket into the file
// with splice(2).
func (fsv *filesystemService) Write(ctx context.Context, call *agentwire.ServerCall) error {
	return fsv.write(ctx, call, false)
}

// WriteFD is Write, except that for content of a known size the go-ahead
// carries the temporary file's descriptor (agentwire.ServerCall.SendFD):
// the host writes the content into it itself and ends the request, and
// the file replaces the target only if it then holds exactly the size
// announced. The host may still send Data frames instead (it did not get
// the descriptor); where the connection cannot pass descriptors, the
// go-ahead is Write's.
func (fsv *filesystemService) WriteFD(ctx context.Context, call *agentwire.ServerCall) error {
	return fsv.write(ctx, call, true)
}

func (fsv *filesystemService) write(ctx context.Context, call *agentwire.ServerCall, byFD bool) error {
	var req agentpb.WriteRequest
	if err := call.Recv(&req); err != nil {
		if err == io.EOF {
			return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "write: the request is empty; send a header first")
		}
		return err
	}
	hdr := req.GetHeader()
	if hdr == nil {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "write: the first message must be the header with the path")
	}
	path, err := cleanPath(hdr.GetPath(), fsv.s.workDir())
	if err != nil {
		return err
	}
	mode := sandbox.FileModeFromUnix(hdr.GetMode())
	if mode.Perm() == 0 {
		mode |= 0o644
	}
	size := int64(-1)
	if hdr.Size != nil {
		size = hdr.GetSize()
		if size < 0 {
			return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "write %s: the size %d is negative", path, size)
		}
	}
	limit := fsv.s.cfg.MaxFileBytes
	if limit > 0 && size > limit {
		return sandbox.InvalidArgument(sandbox.ReasonFileTooLarge, "write %s: the file is over the limit of %d bytes", path, limit)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return sandbox.FailedPrecondition(sandbox.ReasonIsDirectory, "write %s: the path is a directory", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fsError("write", path, err)
	}
	defer fsv.s.trimSoon()
	byFD = byFD && size > 0
	if size >= 0 && !byFD {
		// The header passed: the client, which waits for this, may send
		// the content now. A refused write moves none of it.
		if err := call.Send(&agentpb.WriteResponse{}); err != nil {
			return err
		}
	}
	var written int64
	var failure error // an error for the caller, as opposed to an fs error
	err = writeAtomic(path, mode, false, func(f *os.File) error {
		if size > 0 {
			// Allocating the blocks up front spares the filesystem growing
			// the file a page at a time; where it cannot (EOPNOTSUPP), it
			// does.
			_ = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, size)
		}
		if byFD {
			// The go-ahead, with the file: the host may write into it
			// directly (then it sends no Data frames).
			err := call.SendFD(&agentpb.WriteResponse{}, f)
			if errors.Is(err, agentwire.ErrNoFD) {
				byFD, err = false, call.Send(&agentpb.WriteResponse{})
			}
			if err != nil {
				failure = err
				return err
			}
		}
		for {
			n, data, err := call.RecvData()
			if err == io.EOF && byFD {
				// What the host wrote through the descriptor counts too.
				fi, serr := f.Stat()
				if serr != nil {
					return serr
				}
				written = fi.Size()
			}
			if err == io.EOF {
				if size >= 0 && written != size {
					failure = sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "write %s: the content was %d bytes, not the %d announced; the old file is kept", path, written, size)
				}
				return failure
			}
			if err != nil {
				failure = err
				return err
			}
			switch {
			case limit > 0 && written+n > limit:
				failure = sandbox.InvalidArgument(sandbox.ReasonFileTooLarge, "write %s: the file is over the limit of %d bytes", path, limit)
			case size >= 0 && written+n > size:
				failure = sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "write %s: more content came than the %d bytes announced; the old file is kept", path, size)
			}
			if failure != nil {
				return failure
			}
			m, err := io.Copy(f, data)
			written += m
			if err != nil {
				if m < n && isConnError(err) {
					failure = sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "write %s: the connection ended after %d bytes; the old file is kept: %w", path, written, err)
					return failure
				}
				return err
			}
		}
	})
	if failure != nil {
		return failure
	}
	if err != nil {
		return fsError("write", path, err)
	}
	return call.Reply(&agentpb.WriteResponse{Size: written})
}

// isConnError says whether err is the connection's rather than the file's.
func isConnError(err error) bool {
	var op *net.OpError
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.As(err, &op)
}
