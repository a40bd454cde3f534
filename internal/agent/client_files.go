package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
	"github.com/sbx-run/sbx/internal/agentwire"
	"github.com/sbx-run/sbx/internal/chunkpool"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// SizedReader is content of a known size: Client.WriteFile announces it,
// so that the agent checks it against its limit before any byte is sent.
type SizedReader struct {
	R io.Reader
	// N is the exact size: a source that ends before N bytes fails the
	// write (the old file stays), and bytes after N are not read.
	N    int64
	read int64
}

// Read reads from R, up to N bytes in all.
func (s *SizedReader) Read(p []byte) (int, error) {
	if s.read >= s.N {
		return 0, io.EOF
	}
	if int64(len(p)) > s.N-s.read {
		p = p[:s.N-s.read]
	}
	n, err := s.R.Read(p)
	s.read += int64(n)
	if err == io.EOF && s.read < s.N {
		err = fmt.Errorf("the content ended after %d of %d bytes", s.read, s.N)
	}
	return n, err
}

// Sized returns r as content of exactly n bytes.
func Sized(r io.Reader, n int64) *SizedReader { return &SizedReader{R: r, N: n} }

// ChunkSource is implemented by readers that hold their content in chunks
// of at most 1 MiB already (the server's view of a client's upload):
// WriteChunksTo hands each chunk to w whole, in one Write, so that a
// forwarder sends it on without cutting it up or copying it through
// another buffer. w must not keep the slice after Write returns. It
// returns the bytes written and the first error of either side; at the end
// of the content it returns nil.
type ChunkSource interface {
	WriteChunksTo(w io.Writer) (int64, error)
}

// ReadFile streams a file's content; the caller closes the reader. The
// reader's Size is the content's size (-1 when not known up front). A
// regular file comes as its descriptor where the agent can pass one
// (client_files_fd.go), else as Data frames; either way the reader's
// WriteTo hands the file or the socket to a writer that can take it (an
// HTTP/1.1 response over TCP), which Go turns into sendfile(2) or
// splice(2).
func (c *Client) ReadFile(ctx context.Context, path string) (io.ReadCloser, error) {
	if c.wire.FDs() {
		if rc, err := c.readFD(ctx, path); !errors.Is(err, errTryPlain) {
			return rc, err
		}
	}
	what := "read " + path
	call, err := c.open(ctx, methodRead, &agentpb.ReadRequest{Path: path}, what)
	if err != nil {
		return nil, err
	}
	var hdr agentpb.ReadResponse
	if err := call.Recv(&hdr); err != nil {
		call.Close()
		if err == io.EOF {
			err = errEndedEarly
		}
		return nil, fromWire(err, what)
	}
	return &FileReader{call: call, size: hdr.GetSize(), left: hdr.GetSize(), what: what}, nil
}

// FileReader is a file's content as the agent sends it: Data frames on
// the call, or a regular file's descriptor the agent passed (see
// client_files_fd.go), read directly.
type FileReader struct {
	call *agentwire.Call
	file *os.File        // the passed descriptor, or nil
	ctx  context.Context // the call's, which a passed file's reads check
	size int64
	left int64     // bytes still to come, when the size is known
	cur  io.Reader // the rest of the current Data frame
	what string
	err  error
}

// Size returns the content's size, or -1 when it is not known up front.
func (r *FileReader) Size() int64 { return r.size }

// frame returns the rest of the current Data frame, or the next one; at
// the end of the content it returns io.EOF.
func (r *FileReader) frame() (io.Reader, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.cur != nil {
		return r.cur, nil
	}
	n, data, err := r.call.RecvData()
	switch {
	case err == io.EOF && r.size >= 0 && r.left > 0:
		err = fromWire(fmt.Errorf("%w: the transfer ended with %d bytes to go", agentwire.ErrUnreachable, r.left), r.what)
	case err == io.EOF:
	case err != nil:
		err = fromWire(err, r.what)
	case r.size >= 0 && n > r.left:
		err = sandbox.Internal("%s: the agent sent more than the %d bytes it announced", r.what, r.size)
	}
	if err != nil {
		r.err = err
		return nil, err
	}
	r.left -= n
	r.cur = data
	return r.cur, nil
}

func (r *FileReader) Read(p []byte) (int, error) {
	if r.file != nil {
		return r.readFile(p)
	}
	for {
		cur, err := r.frame()
		if err != nil {
			return 0, err
		}
		n, err := cur.Read(p)
		if err == io.EOF {
			r.cur = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		if err != nil {
			r.err = fromWire(err, r.what)
			return n, r.err
		}
		return n, nil
	}
}

// WriteTo copies the rest of the content to w, each frame through its
// WriteTo (the socket through w's ReadFrom, when w has one).
func (r *FileReader) WriteTo(w io.Writer) (int64, error) {
	if r.file != nil {
		return r.writeFileTo(w)
	}
	var total int64
	for {
		cur, err := r.frame()
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		var n int64
		if wt, ok := cur.(io.WriterTo); ok && w != io.Discard {
			n, err = wt.WriteTo(w)
		} else {
			buf := chunkpool.Get(maxChunk)[:maxChunk]
			n, err = io.CopyBuffer(onlyWriter{w}, cur, buf)
			chunkpool.Put(buf)
		}
		total += n
		r.cur = nil
		if err != nil {
			if errors.Is(err, agentwire.ErrUnreachable) {
				err = fromWire(err, r.what)
			}
			r.err = err
			return total, err
		}
	}
}

// Close ends the transfer; one not read to its end is cut.
func (r *FileReader) Close() error {
	if r.file != nil {
		return r.file.Close()
	}
	r.call.Close()
	return nil
}

type onlyWriter struct{ io.Writer }

// WriteFile streams r into path atomically: a header (with the size, for a
// *SizedReader), the content as Data frames, then the request's end. If r
// fails, the transfer is cut before its end, so the agent keeps the old
// file. Content of a known size goes straight into the agent's temporary
// file where the agent can pass its descriptor (client_files_fd.go).
func (c *Client) WriteFile(ctx context.Context, path string, mode os.FileMode, r io.Reader) error {
	what := "write " + path
	hdr := &agentpb.WriteRequest_Header{Path: path, Mode: sandbox.UnixMode(mode)}
	sr, sized := r.(*SizedReader)
	if sized {
		if sr.N < 0 {
			return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "%s: the size %d is negative", what, sr.N)
		}
		hdr.Size = &sr.N
		if sr.N > 0 && c.wire.FDs() {
			if err := c.writeFD(ctx, hdr, sr, what); !errors.Is(err, errTryPlain) {
				return err
			}
		}
	}
	call, err := c.open(ctx, methodWrite, &agentpb.WriteRequest{Msg: &agentpb.WriteRequest_Header_{Header: hdr}}, what)
	if err != nil {
		return err
	}
	defer call.Close()
	if sized {
		// The agent checks the header (path, limit) and says go before any
		// content is sent, so that a refused write moves none of it.
		if err := call.Recv(&agentpb.WriteResponse{}); err != nil {
			if err == io.EOF {
				err = errEndedEarly
			}
			return fromWire(err, what)
		}
	}
	return sendContent(call, r, what)
}

// sendContent sends the content of a write after its go-ahead, ends the
// request and reads the answer.
func sendContent(call *agentwire.Call, r io.Reader, what string) error {
	sr, sized := r.(*SizedReader)
	buf := chunkpool.Get(maxChunk)[:maxChunk]
	defer chunkpool.Put(buf)
	var err error
	switch {
	case sized:
		err = call.SendFrom(sr, sr.N, buf)
	default:
		if cs, ok := r.(ChunkSource); ok {
			_, err = cs.WriteChunksTo(&dataWriter{call: call})
		} else {
			err = copyFrames(call, r, buf)
		}
	}
	if err == nil {
		err = call.CloseSend()
	}
	var src *agentwire.SourceError
	if errors.As(err, &src) {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "%s: reading the content failed, the old file is kept: %w", what, src.Err)
	}
	if err != nil && !errors.Is(err, agentwire.ErrUnreachable) {
		// The source (a ChunkSource) failed: cut the transfer.
		call.Abort()
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "%s: reading the content failed, the old file is kept: %w", what, err)
	}
	// A failed send usually means the agent answered early with an error
	// and closed: read that answer either way.
	var res agentpb.WriteResponse
	if rerr := call.Answer(&res); rerr != nil || err != nil {
		if rerr == nil || rerr == io.EOF {
			rerr = err
		}
		return fromWire(rerr, what)
	}
	return nil
}

// dataWriter sends each Write as one Data frame.
type dataWriter struct{ call *agentwire.Call }

func (w *dataWriter) Write(p []byte) (int, error) {
	if err := w.call.SendData(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// copyFrames sends r in frames of up to maxChunk bytes (io.ReadFull: a
// source that returns a few KiB per Read still makes few frames).
func copyFrames(call *agentwire.Call, r io.Reader, buf []byte) error {
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if werr := call.SendData(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return &agentwire.SourceError{Err: err}
		}
	}
}

// Stat describes one path (without following a final symlink).
func (c *Client) Stat(ctx context.Context, path string) (sandbox.FileInfo, error) {
	var res agentpb.StatResponse
	if err := c.wire.Unary(ctx, methodStat, &agentpb.StatRequest{Path: path}, &res); err != nil {
		return sandbox.FileInfo{}, fromWire(err, "stat "+path)
	}
	return fileInfoFromWire(res.GetInfo()), nil
}

// ListDir lists a directory's entries, sorted by name.
func (c *Client) ListDir(ctx context.Context, path string) ([]sandbox.FileInfo, error) {
	var res agentpb.ListDirResponse
	if err := c.wire.Unary(ctx, methodListDir, &agentpb.ListDirRequest{Path: path}, &res); err != nil {
		return nil, fromWire(err, "list "+path)
	}
	out := make([]sandbox.FileInfo, 0, len(res.GetEntries()))
	for _, m := range res.GetEntries() {
		out = append(out, fileInfoFromWire(m))
	}
	return out, nil
}

// MkdirAll creates a directory and its parents.
func (c *Client) MkdirAll(ctx context.Context, path string, mode os.FileMode) error {
	err := c.wire.Unary(ctx, methodMakeDir, &agentpb.MakeDirRequest{Path: path, Mode: sandbox.UnixMode(mode)}, &agentpb.MakeDirResponse{})
	return fromWire(err, "mkdir "+path)
}

// Remove removes a file or an empty directory, or a tree when recursive.
func (c *Client) Remove(ctx context.Context, path string, recursive bool) error {
	err := c.wire.Unary(ctx, methodRemove, &agentpb.RemoveRequest{Path: path, Recursive: recursive}, &agentpb.RemoveResponse{})
	return fromWire(err, "remove "+path)
}

// Rename moves from to to.
func (c *Client) Rename(ctx context.Context, from, to string) error {
	err := c.wire.Unary(ctx, methodRename, &agentpb.RenameRequest{From: from, To: to}, &agentpb.RenameResponse{})
	return fromWire(err, "rename "+from)
}
