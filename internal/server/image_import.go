package server

import (
	"context"
	"os"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Import implements ImageService.Import (image admins only): the tarball is
// spooled, bounded, to a temp file in the server's import dir (the image
// store reads a tar twice, to tell its format and then to store it), handed
// to the store, and removed whatever happens.
func (s *imageService) Import(ctx context.Context, stream *connect.ClientStream[sbxv1.ImportImageRequest]) (*connect.Response[sbxv1.ImportImageResponse], error) {
	if err := s.requireAdmin(ctx, "importing an image"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.importDir, 0o700); err != nil {
		return nil, sandbox.Internal("import: creating the spool dir %s: %w", s.importDir, err)
	}
	f, err := os.CreateTemp(s.importDir, "import-*.tar")
	if err != nil {
		return nil, sandbox.Internal("import: creating a spool file in %s: %w", s.importDir, err)
	}
	defer os.Remove(f.Name())
	size, err := s.spool(stream, f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = sandbox.Internal("import: writing the spool file: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, invalidf("import got no data: send the tarball's bytes")
	}
	imgs, err := s.images.Import(ctx, f.Name(), nil)
	if err != nil {
		return nil, err
	}
	resp := &sbxv1.ImportImageResponse{}
	for _, img := range imgs {
		resp.Images = append(resp.Images, imageToWire(img))
	}
	return connect.NewResponse(resp), nil
}

// spool copies the stream's chunks to f, within the size bound.
func (s *imageService) spool(stream *connect.ClientStream[sbxv1.ImportImageRequest], f *os.File) (int64, error) {
	var size int64
	for stream.Receive() {
		if stream.Msg().GetAbort() {
			return size, sandbox.InvalidArgument(sandbox.ReasonImportAborted, "the client abandoned the import after %d bytes; nothing was stored", size)
		}
		data := stream.Msg().GetData()
		if len(data) > maxChunk {
			return size, sandbox.InvalidArgument(sandbox.ReasonImportTooLarge, "an Import chunk is %d bytes: send at most %d per message", len(data), maxChunk)
		}
		size += int64(len(data))
		if size > s.maxImport {
			return size, sandbox.InvalidArgument(sandbox.ReasonImportTooLarge,
				"the imported tarball is over the server's limit of %d bytes: import a smaller image, or raise maxImportBytes", s.maxImport)
		}
		if _, err := f.Write(data); err != nil {
			return size, sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonImportTooLarge,
				"import: spooling the tarball failed (is the data dir's disk full?): %w", err)
		}
	}
	return size, stream.Err()
}
