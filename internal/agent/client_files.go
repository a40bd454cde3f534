package agent

import (
	"context"
	"errors"
	"io"
	"os"

	"connectrpc.com/connect"

	agentv1 "github.com/sbx-run/sbx/gen/sbx/agent/v1"
	"github.com/sbx-run/sbx/internal/chunkcodec"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// ReadFile streams a file's content. The caller closes the reader. It uses
// the agent's bulk endpoint (a *BulkReader, whose WriteTo lets the kernel
// move the bytes), and the Connect Read stream for an agent without one.
func (c *Client) ReadFile(ctx context.Context, path string) (io.ReadCloser, error) {
	rc, err := c.readBulk(ctx, path)
	if !errors.Is(err, errNoBulk) {
		return rc, err
	}
	return c.readFileRPC(ctx, path)
}

// readFileRPC reads a file through the Connect Read stream.
func (c *Client) readFileRPC(ctx context.Context, path string) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	st, err := c.fs.Read(ctx, connect.NewRequest(&agentv1.ReadRequest{Path: path, ChunkSize: defaultChunk}))
	if err != nil {
		cancel()
		return nil, fromWire(err, "read "+path)
	}
	r := &fileReader{st: st, cancel: cancel, path: path}
	// Receive the first chunk now, so that a missing file is an error of
	// ReadFile rather than of the first Read.
	if err := r.fill(); err != nil && err != io.EOF {
		r.Close()
		return nil, err
	}
	return r, nil
}

type fileReader struct {
	st     *connect.ServerStreamForClient[agentv1.ReadResponse]
	cancel context.CancelFunc
	path   string
	chunk  []byte // the received chunk, handed back once read
	buf    []byte // the unread part of chunk
	err    error
}

func (r *fileReader) fill() error {
	for len(r.buf) == 0 && r.err == nil {
		chunkcodec.Put(r.chunk)
		r.chunk = nil
		if r.st.Receive() {
			r.chunk = r.st.Msg().GetData()
			r.buf = r.chunk
			continue
		}
		if err := r.st.Err(); err != nil {
			r.err = fromWire(err, "read "+r.path)
		} else {
			r.err = io.EOF
		}
	}
	if len(r.buf) > 0 {
		return nil
	}
	return r.err
}

func (r *fileReader) Read(p []byte) (int, error) {
	if err := r.fill(); err != nil {
		return 0, err
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// ChunkSource is implemented by readers that hold their content in chunks
// of at most 1 MiB already (the agent client's file reader, the server's
// view of a client's upload): WriteChunksTo hands each chunk to w whole, in
// one Write, so that a forwarder sends it on without cutting it up or
// copying it through another buffer. w must not keep the slice after Write
// returns. It returns the bytes written and the first error of either
// side; at the end of the content it returns nil.
type ChunkSource interface {
	WriteChunksTo(w io.Writer) (int64, error)
}

// WriteTo is WriteChunksTo, so that io.Copy passes whole chunks too.
func (r *fileReader) WriteTo(w io.Writer) (int64, error) { return r.WriteChunksTo(w) }

// WriteChunksTo implements ChunkSource.
func (r *fileReader) WriteChunksTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if err := r.fill(); err != nil {
			if err == io.EOF {
				return total, nil
			}
			return total, err
		}
		n, err := w.Write(r.buf)
		total += int64(n)
		r.buf = r.buf[n:]
		if err != nil {
			return total, err
		}
	}
}

func (r *fileReader) Close() error {
	chunkcodec.Put(r.chunk)
	r.chunk, r.buf = nil, nil
	r.cancel()
	return r.st.Close()
}

// WriteFile streams r into path atomically. Content of a known size (a
// *SizedReader) goes over the agent's bulk endpoint as one raw body; other
// content as Connect chunks: a header, chunks, then a commit with the size.
// If r fails, the transfer is cut before its end, so the agent keeps the
// old file.
func (c *Client) WriteFile(ctx context.Context, path string, mode os.FileMode, r io.Reader) error {
	if sr, ok := r.(*SizedReader); ok {
		if err := c.writeBulk(ctx, path, mode, sr); !errors.Is(err, errNoBulk) {
			return err
		}
		// An agent from before the bulk endpoint: nothing was read yet.
	}
	return c.writeFileRPC(ctx, path, mode, r)
}

// writeFileRPC writes a file through the Connect Write stream.
func (c *Client) writeFileRPC(ctx context.Context, path string, mode os.FileMode, r io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := c.fs.Write(ctx)
	send := func(m *agentv1.WriteRequest) error {
		if err := st.Send(m); err != nil {
			if errors.Is(err, io.EOF) {
				// The agent answered early (with an error): fetch it.
				_, err = st.CloseAndReceive()
			}
			return fromWire(err, "write "+path)
		}
		return nil
	}
	if err := send(&agentv1.WriteRequest{Msg: &agentv1.WriteRequest_Header_{Header: &agentv1.WriteRequest_Header{Path: path, Mode: sandbox.UnixMode(mode)}}}); err != nil {
		return err
	}
	cw := &chunkWriter{send: send}
	var rerr error
	if cs, ok := r.(ChunkSource); ok {
		_, rerr = cs.WriteChunksTo(cw)
	} else {
		rerr = copyChunks(cw, r)
	}
	if cw.err != nil {
		return cw.err
	}
	if rerr != nil {
		cancel() // the agent sees a reset stream and drops the temp file
		_, _ = st.CloseAndReceive()
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "write %s: reading the content failed, the old file is kept: %w", path, rerr)
	}
	size := cw.size
	if err := send(&agentv1.WriteRequest{Msg: &agentv1.WriteRequest_Commit_{Commit: &agentv1.WriteRequest_Commit{Size: size}}}); err != nil {
		return err
	}
	_, err := st.CloseAndReceive()
	return fromWire(err, "write "+path)
}

// chunkWriter sends what it is given as data messages of at most maxChunk
// bytes; err is the first failure of send (the agent's answer), as opposed
// to a failure of the source.
type chunkWriter struct {
	send func(*agentv1.WriteRequest) error
	size int64
	err  error
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), maxChunk)
		if err := w.send(&agentv1.WriteRequest{Msg: &agentv1.WriteRequest_Data{Data: p[:n]}}); err != nil {
			w.err = err
			return written, err
		}
		w.size += int64(n)
		written += n
		p = p[n:]
	}
	return written, nil
}

// copyChunks reads r in full chunks (io.ReadFull: a source that returns a
// few KiB per Read still makes few messages) and writes them to w; it
// returns r's error, or nil at its end, and stops when w fails.
func copyChunks(w *chunkWriter, r io.Reader) error {
	buf := chunkcodec.Get(defaultChunk)[:defaultChunk]
	defer chunkcodec.Put(buf)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil // w.err says why
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Stat describes one path (without following a final symlink).
func (c *Client) Stat(ctx context.Context, path string) (sandbox.FileInfo, error) {
	res, err := c.fs.Stat(ctx, connect.NewRequest(&agentv1.StatRequest{Path: path}))
	if err != nil {
		return sandbox.FileInfo{}, fromWire(err, "stat "+path)
	}
	return fileInfoFromWire(res.Msg.GetInfo()), nil
}

// ListDir lists a directory's entries, sorted by name.
func (c *Client) ListDir(ctx context.Context, path string) ([]sandbox.FileInfo, error) {
	res, err := c.fs.ListDir(ctx, connect.NewRequest(&agentv1.ListDirRequest{Path: path}))
	if err != nil {
		return nil, fromWire(err, "list "+path)
	}
	out := make([]sandbox.FileInfo, 0, len(res.Msg.GetEntries()))
	for _, m := range res.Msg.GetEntries() {
		out = append(out, fileInfoFromWire(m))
	}
	return out, nil
}

// MkdirAll creates a directory and its parents.
func (c *Client) MkdirAll(ctx context.Context, path string, mode os.FileMode) error {
	_, err := c.fs.MakeDir(ctx, connect.NewRequest(&agentv1.MakeDirRequest{Path: path, Mode: sandbox.UnixMode(mode)}))
	return fromWire(err, "mkdir "+path)
}

// Remove removes a file or an empty directory, or a tree when recursive.
func (c *Client) Remove(ctx context.Context, path string, recursive bool) error {
	_, err := c.fs.Remove(ctx, connect.NewRequest(&agentv1.RemoveRequest{Path: path, Recursive: recursive}))
	return fromWire(err, "remove "+path)
}

// Rename moves from to to.
func (c *Client) Rename(ctx context.Context, from, to string) error {
	_, err := c.fs.Rename(ctx, connect.NewRequest(&agentv1.RenameRequest{From: from, To: to}))
	return fromWire(err, "rename "+from)
}
