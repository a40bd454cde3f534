package sbx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/chunkcodec"
	"github.com/sbx-run/sbx/internal/chunkpool"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// fileChunk is the size of the chunks sent to the server (its maximum).
const fileChunk = 1 << 20

// fileCodec is the client's binary protobuf codec: ReadFile chunks are
// decoded into pooled buffers (see internal/chunkcodec), which fileReader
// hands back once read, so a download does not allocate (and fault in) a
// fresh 1 MiB per message. The wire format is standard protobuf.
var fileCodec = chunkcodec.New(
	chunkcodec.Bytes(1, func(m *sbxv1.ReadFileResponse, data []byte) { m.Data = data }),
)

// ReadFile returns the whole content of the file at path inside the sandbox
// (absolute, or relative to its working dir). For large files use ReadFileTo or OpenFile.
func (s *Sandbox) ReadFile(ctx context.Context, path string) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := s.ReadFileTo(ctx, path, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ReadFileTo streams the file at path into w and returns the bytes copied.
func (s *Sandbox) ReadFileTo(ctx context.Context, path string, w io.Writer) (int64, error) {
	r, err := s.OpenFile(ctx, path)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	return io.Copy(w, r)
}

// OpenFile opens the file at path for streaming reads. Close the reader
// (or cancel ctx) to end the transfer early.
func (s *Sandbox) OpenFile(ctx context.Context, path string) (io.ReadCloser, error) {
	if err := s.Wait(ctx); err != nil {
		return nil, err
	}
	if rc, err := s.openBulk(ctx, path); !errors.Is(err, errNoBulk) {
		return rc, err
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := s.c.sandboxes.ReadFile(ctx, connect.NewRequest(&sbxv1.ReadFileRequest{SandboxId: s.ID(), Path: path}))
	if err != nil {
		cancel()
		return nil, s.c.fromWire(err)
	}
	r := &fileReader{s: s, stream: stream, cancel: cancel}
	// Receive the first chunk now, so that a missing file fails here and
	// not on the first Read.
	if err := r.next(); err != nil && err != io.EOF {
		r.Close()
		return nil, err
	}
	return r, nil
}

type fileReader struct {
	s      *Sandbox
	stream *connect.ServerStreamForClient[sbxv1.ReadFileResponse]
	cancel context.CancelFunc
	chunk  []byte // the received chunk, handed back once read
	buf    []byte // the unread part of chunk
	err    error
}

func (r *fileReader) next() error {
	for len(r.buf) == 0 && r.err == nil {
		chunkpool.Put(r.chunk)
		r.chunk = nil
		if r.stream.Receive() {
			r.chunk = r.stream.Msg().GetData()
			r.buf = r.chunk
			continue
		}
		if err := r.stream.Err(); err != nil {
			r.err = r.s.c.fromWire(err)
		} else {
			r.err = io.EOF
		}
	}
	if len(r.buf) > 0 {
		return nil
	}
	return r.err
}

func (r *fileReader) Read(b []byte) (int, error) {
	if err := r.next(); err != nil {
		return 0, err
	}
	n := copy(b, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// WriteTo hands each received chunk to w whole, so that io.Copy (and
// ReadFileTo) copies once per chunk instead of through a small buffer.
func (r *fileReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if err := r.next(); err != nil {
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
	chunkpool.Put(r.chunk)
	r.chunk, r.buf = nil, nil
	r.cancel()
	r.stream.Close()
	return nil
}

// WriteFile writes data to the file at path inside the sandbox (absolute,
// or relative to its working dir) atomically, creating missing parent directories; perm 0 means 0644.
func (s *Sandbox) WriteFile(ctx context.Context, path string, data []byte, perm fs.FileMode) error {
	_, err := s.WriteFileFrom(ctx, path, bytes.NewReader(data), perm)
	return err
}

// WriteFileFrom streams r into the file at path and returns the bytes
// written. The file is replaced only once all of r arrived: if reading r
// fails or ctx ends, the old file (if any) stays as it was.
//
// Content of a known size of at least 1 MiB (r has a Len method, as
// *bytes.Reader, *bytes.Buffer and *strings.Reader do, or is a regular
// *os.File) goes over the server's bulk endpoint as one raw body; the rest
// as WriteFile RPC chunks.
func (s *Sandbox) WriteFileFrom(ctx context.Context, path string, r io.Reader, perm fs.FileMode) (int64, error) {
	if err := s.Wait(ctx); err != nil {
		return 0, err
	}
	if size, ok := knownSize(r); ok && size >= bulkMinBytes {
		if n, err := s.writeBulk(ctx, path, r, size, perm); !errors.Is(err, errNoBulk) {
			return n, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream := s.c.sandboxes.WriteFile(ctx)
	send := func(req *sbxv1.WriteFileRequest) error {
		err := stream.Send(req)
		if errors.Is(err, io.EOF) {
			// The server ended the call; its error comes with the response.
			_, err = stream.CloseAndReceive()
			if err == nil {
				err = errorf(ErrInternal, "INTERNAL", "the server ended the write of %s early", path)
			}
		}
		return err
	}
	hdr := &sbxv1.WriteFileRequest_Header{SandboxId: s.ID(), Path: path, Mode: sandbox.UnixMode(perm)}
	if err := send(&sbxv1.WriteFileRequest{Msg: &sbxv1.WriteFileRequest_Header_{Header: hdr}}); err != nil {
		return 0, s.c.fromWire(err)
	}
	buf := make([]byte, fileChunk)
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if err := send(&sbxv1.WriteFileRequest{Msg: &sbxv1.WriteFileRequest_Data{Data: buf[:n]}}); err != nil {
				return 0, s.c.fromWire(err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			// Abort so that the server does not commit a half-written
			// file. A second header is a protocol error that makes the
			// server fail the write deterministically; merely cancelling
			// could race with the clean end of the request body.
			stream.Send(&sbxv1.WriteFileRequest{Msg: &sbxv1.WriteFileRequest_Header_{Header: hdr}})
			stream.CloseAndReceive()
			return 0, &Error{Kind: ErrInvalidArgument, Reason: "SOURCE_READ_FAILED",
				Message: fmt.Sprintf("reading the content for %s failed (%v): the file in the sandbox was left unchanged", path, rerr), Err: rerr}
		}
	}
	resp, err := stream.CloseAndReceive()
	if err != nil {
		return 0, s.c.fromWire(err)
	}
	return resp.Msg.GetSize(), nil
}

// Stat describes the path (without following a final symlink).
func (s *Sandbox) Stat(ctx context.Context, path string) (FileInfo, error) {
	if err := s.Wait(ctx); err != nil {
		return FileInfo{}, err
	}
	resp, err := s.c.sandboxes.Stat(ctx, connect.NewRequest(&sbxv1.StatRequest{SandboxId: s.ID(), Path: path}))
	if err != nil {
		return FileInfo{}, s.c.fromWire(err)
	}
	return fileInfoFromWire(resp.Msg.GetInfo()), nil
}

// ListDir lists the directory at path, sorted by name.
func (s *Sandbox) ListDir(ctx context.Context, path string) ([]FileInfo, error) {
	if err := s.Wait(ctx); err != nil {
		return nil, err
	}
	resp, err := s.c.sandboxes.ListDir(ctx, connect.NewRequest(&sbxv1.ListDirRequest{SandboxId: s.ID(), Path: path}))
	if err != nil {
		return nil, s.c.fromWire(err)
	}
	out := make([]FileInfo, 0, len(resp.Msg.GetEntries()))
	for _, e := range resp.Msg.GetEntries() {
		out = append(out, fileInfoFromWire(e))
	}
	return out, nil
}

// MakeDir creates the directory at path and its parents; perm 0 means 0755.
func (s *Sandbox) MakeDir(ctx context.Context, path string, perm fs.FileMode) error {
	if err := s.Wait(ctx); err != nil {
		return err
	}
	_, err := s.c.sandboxes.MakeDir(ctx, connect.NewRequest(&sbxv1.MakeDirRequest{SandboxId: s.ID(), Path: path, Mode: sandbox.UnixMode(perm)}))
	return s.c.fromWire(err)
}

// Remove removes a file or an empty directory, or a whole tree when
// recursive is set.
func (s *Sandbox) Remove(ctx context.Context, path string, recursive bool) error {
	if err := s.Wait(ctx); err != nil {
		return err
	}
	_, err := s.c.sandboxes.Remove(ctx, connect.NewRequest(&sbxv1.RemoveRequest{SandboxId: s.ID(), Path: path, Recursive: recursive}))
	return s.c.fromWire(err)
}
