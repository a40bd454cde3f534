package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
	"github.com/sbx-run/sbx/internal/agentwire"
	"github.com/sbx-run/sbx/internal/chunkpool"
	"github.com/sbx-run/sbx/internal/protolite"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Files by descriptor. ReadFile and WriteFile of a known size first try
// the methods that pass the file's descriptor (ReadFD, WriteFD; see
// agentwire's fd.go): the agent still resolves the path inside the
// sandbox, creates the temporary file and renames it into place, but the
// bytes go between the file and the caller in this process, by sendfile or
// splice where the other side allows, without crossing the agent's socket.
// Their cost: the page cache a write fills is charged to this process's
// cgroup, not the sandbox's.
//
// An agent that cannot pass descriptors (one of an older sbx, or a kernel
// that drops them, as gVisor's may) is remembered, and its calls use Read
// and Write.

// fdTransfers counts the reads and writes that went by descriptor (for
// tests).
var fdTransfers atomic.Int64

// errTryPlain says: make the call again with the method that moves bytes.
var errTryPlain = errors.New("the agent passes no descriptors")

// isNoMethod says err is an agent's answer to a method it does not know
// (an agent of an older sbx).
func isNoMethod(err error) bool {
	return sandbox.ReasonOf(err) == sandbox.ReasonInvalidSpec && strings.Contains(err.Error(), "has no method")
}

// openFD starts a call of method with req and receives the first answer
// and the descriptor that may come with it. errTryPlain: use the plain
// method (the call is closed then).
func (c *Client) openFD(ctx context.Context, method string, req, resp protolite.Message, what string) (*agentwire.Call, *os.File, error) {
	call, err := c.wire.Open(ctx, method)
	if err != nil {
		return nil, nil, fromWire(err, what)
	}
	serr := call.Send(req)
	f, err := call.RecvFD(resp)
	if err == nil {
		return call, f, nil
	}
	call.Close()
	switch {
	case errors.Is(err, agentwire.ErrFDLost) || isNoMethod(err):
		c.wire.NoFDs()
		return nil, nil, errTryPlain
	case err == io.EOF:
		err = errEndedEarly
	case serr != nil && errors.Is(err, agentwire.ErrUnreachable):
		err = serr
	}
	return nil, nil, fromWire(err, what)
}

// readFD is ReadFile by descriptor.
func (c *Client) readFD(ctx context.Context, path string) (io.ReadCloser, error) {
	what := "read " + path
	var hdr agentpb.ReadResponse
	call, f, err := c.openFD(ctx, methodReadFD, &agentpb.ReadRequest{Path: path}, &hdr, what)
	if err != nil {
		return nil, err
	}
	if f == nil {
		// Not a regular file, or no descriptors on this socket: the
		// bytes follow as Read's.
		return &FileReader{call: call, size: hdr.GetSize(), left: hdr.GetSize(), what: what}, nil
	}
	// The call ends with the descriptor: its connection serves the next.
	err = call.Recv(nil)
	call.Close()
	if err != io.EOF {
		f.Close()
		return nil, fromWire(err, what)
	}
	fdTransfers.Add(1)
	return &FileReader{file: f, ctx: ctx, size: hdr.GetSize(), left: hdr.GetSize(), what: what}, nil
}

// errShrank is the error of a passed file that ended before its size.
func (r *FileReader) errShrank() error {
	return sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "%s: the file shrank by %d bytes while it was read; read it again", r.what, r.left)
}

// readFile is Read of a passed file, up to the size announced.
func (r *FileReader) readFile(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.left <= 0 {
		return 0, io.EOF
	}
	if err := r.ctx.Err(); err != nil {
		r.err = fromWire(err, r.what)
		return 0, r.err
	}
	p = p[:min(int64(len(p)), r.left)]
	n, err := r.file.Read(p)
	r.left -= int64(n)
	switch {
	case err == io.EOF && r.left > 0:
		r.err = r.errShrank()
	case err == io.EOF:
		err = nil
	case err != nil:
		r.err = sandbox.Internal("%s: %w", r.what, err)
	}
	if n > 0 {
		return n, nil
	}
	return 0, r.err
}

// fileStep is how much of a passed file writeFileTo moves between two
// checks of the call's context.
const fileStep = 64 << 20

// writeFileTo is WriteTo of a passed file: through w's ReadFrom when it
// has one (an HTTP/1.1 response over TCP: sendfile(2)), else through one
// pooled buffer; fileStep at a time, so that the call's end stops it.
func (r *FileReader) writeFileTo(w io.Writer) (int64, error) {
	var total int64
	rf, direct := w.(io.ReaderFrom)
	direct = direct && w != io.Discard
	var buf []byte
	if !direct {
		buf = chunkpool.Get(maxChunk)[:maxChunk]
		defer chunkpool.Put(buf)
	}
	for r.left > 0 && r.err == nil {
		if err := r.ctx.Err(); err != nil {
			r.err = fromWire(err, r.what)
			break
		}
		step := min(r.left, fileStep)
		lr := &io.LimitedReader{R: r.file, N: step}
		var n int64
		var err error
		if direct {
			n, err = rf.ReadFrom(lr)
		} else {
			n, err = io.CopyBuffer(onlyWriter{w}, lr, buf)
		}
		total += n
		r.left -= n
		if err == nil && n < step {
			err = r.errShrank()
		}
		if err != nil {
			r.err = err
		}
	}
	return total, r.err
}

// writeFD is WriteFile of sized content by descriptor. errTryPlain: use
// Write (nothing of the content was read).
func (c *Client) writeFD(ctx context.Context, hdr *agentpb.WriteRequest_Header, sr *SizedReader, what string) error {
	req := &agentpb.WriteRequest{Msg: &agentpb.WriteRequest_Header_{Header: hdr}}
	call, f, err := c.openFD(ctx, methodWriteFD, req, &agentpb.WriteResponse{}, what)
	if err != nil {
		return err
	}
	defer call.Close()
	if f == nil {
		// The agent could not pass the file: it takes Data frames.
		return sendContent(call, sr, what)
	}
	err = copyToFile(ctx, f, sr)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = &fileError{cerr}
	}
	var fe *fileError
	switch {
	case errors.As(err, &fe):
		call.Abort()
		// As the agent says it on the plain path: the call, the path, what
		// happened (the descriptor's own name is no path of the sandbox's).
		cause := fe.err
		var errno syscall.Errno
		if errors.As(cause, &errno) {
			cause = errno
		}
		return fromWire(fsError("write", hdr.GetPath(), cause), what)
	case err != nil && ctx.Err() != nil:
		call.Abort()
		return fromWire(ctx.Err(), what)
	case err != nil:
		// Cutting the call makes the agent drop the temporary file.
		call.Abort()
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "%s: reading the content failed, the old file is kept: %w", what, err)
	}
	if err := call.CloseSend(); err != nil {
		return fromWire(err, what)
	}
	var res agentpb.WriteResponse
	if err := call.Answer(&res); err != nil {
		return fromWire(err, what)
	}
	fdTransfers.Add(1)
	return nil
}

// fileError is a failed write into the passed file (as opposed to a
// failed read of the content).
type fileError struct{ err error }

func (e *fileError) Error() string { return e.err.Error() }

// copyToFile copies the sized content into f through one pooled buffer,
// checking ctx between chunks.
func copyToFile(ctx context.Context, f *os.File, sr *SizedReader) error {
	buf := chunkpool.Get(maxChunk)[:maxChunk]
	defer chunkpool.Put(buf)
	n, err := io.CopyBuffer(&ctxFileWriter{ctx: ctx, f: f}, sr, buf)
	if err == nil && n < sr.N {
		err = fmt.Errorf("the content ended after %d of %d bytes", n, sr.N)
	}
	return err
}

// ctxFileWriter writes to a file until ctx ends; its errors are
// *fileError.
type ctxFileWriter struct {
	ctx context.Context
	f   *os.File
}

func (w *ctxFileWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := w.f.Write(p)
	if err != nil {
		return n, &fileError{err}
	}
	return n, nil
}
