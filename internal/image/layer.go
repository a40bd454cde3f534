package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// layerSource is where a layer's bytes come from.
type layerSource struct {
	// open returns the blob stream: compressed (or not) as stored when
	// digest is set, else the uncompressed tar.
	open func() (io.ReadCloser, error)
	// digest and size describe the blob as open returns it; digest is zero
	// for sources that only offer the uncompressed tar.
	digest v1.Hash
	size   int64
	// diffID is the uncompressed tar's digest from the image config.
	diffID v1.Hash
}

// progressEvery is how many bytes pass between two "downloading" events.
const progressEvery = 1 << 20

// ensureLayer makes the layer present in the cache, downloading and
// unpacking it at most once at a time per diffID, and returns its size.
func (s *Store) ensureLayer(ctx context.Context, ref string, src layerSource, emit func(Progress)) (int64, error) {
	layerID := src.digest.String()
	if src.digest == (v1.Hash{}) {
		layerID = src.diffID.String()
	}
	if size, ok := s.layerCached(src.diffID); ok {
		emit(Progress{Ref: ref, Layer: layerID, Done: src.size, Total: src.size, Status: StatusCached})
		return size, nil
	}
	return s.layerFlights.do(ctx, src.diffID.String(), emit, func(ctx context.Context, emit func(Progress)) (int64, error) {
		if size, ok := s.layerCached(src.diffID); ok {
			emit(Progress{Ref: ref, Layer: layerID, Done: src.size, Total: src.size, Status: StatusCached})
			return size, nil
		}
		return s.fetchLayer(ctx, ref, layerID, src, emit)
	})
}

// fetchLayer downloads, verifies and unpacks one layer into a temp dir and
// renames it into place only when every digest matched.
func (s *Store) fetchLayer(ctx context.Context, ref, layerID string, src layerSource, emit func(Progress)) (int64, error) {
	tmp, err := os.MkdirTemp(s.path(dirTemp), "l-")
	if err != nil {
		return 0, sandbox.Internal("image %q: creating a temp dir in the image cache: %w", ref, err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return 0, sandbox.Internal("image %q: %w", ref, err)
	}

	rc, err := src.open()
	if err != nil {
		return 0, digestErr(ref, "layer "+layerID, err)
	}
	defer rc.Close()
	cr := &countingReader{r: rc, ctx: ctx, max: src.size, emit: func(done int64) {
		emit(Progress{Ref: ref, Layer: layerID, Done: done, Total: src.size, Status: StatusDownloading})
	}}
	var blobHash hash.Hash = sha256.New()
	raw := bufio.NewReaderSize(io.TeeReader(cr, blobHash), 64<<10)

	diffHash := sha256.New()
	size, unpackErr := func() (int64, error) {
		dec, err := decompress(raw)
		if err != nil {
			return 0, err
		}
		defer dec.Close()
		tr := io.TeeReader(dec, diffHash)
		size, err := unpack(dir, tr, s.cfg.MaxImageBytes)
		if err != nil {
			return 0, err
		}
		// The tar's end-of-archive padding is part of the diffID.
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return 0, err
		}
		return size, nil
	}()
	// Read the blob to its end in all cases: whether the bytes matched their
	// digest decides which error is the real one.
	if _, err := io.Copy(io.Discard, raw); err != nil && cr.err == nil {
		cr.err = err
	}
	cr.report()

	switch {
	case cr.err != nil:
		if errors.Is(cr.err, context.Canceled) || errors.Is(cr.err, context.DeadlineExceeded) || isNetErr(cr.err) {
			return 0, classify(ref, "the registry", cr.err)
		}
		return 0, sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonDigestMismatch,
			"image %q: layer %s was cut short or does not match its digest; nothing was cached, pull again: %w", ref, layerID, cr.err)
	case src.digest != (v1.Hash{}) && (hex.EncodeToString(blobHash.Sum(nil)) != src.digest.Hex || (src.size > 0 && cr.n != src.size)):
		return 0, sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonDigestMismatch,
			"image %q: layer %s does not match its digest (got sha256:%x, %d of %d bytes); nothing was cached, pull again",
			ref, layerID, blobHash.Sum(nil), cr.n, src.size)
	case errors.Is(unpackErr, errLayerTooLarge):
		return 0, tooLarge(ref, "layer "+layerID+" unpacks to more", s.cfg.MaxImageBytes)
	case unpackErr != nil:
		var ue *unsafeLayerError
		if errors.As(unpackErr, &ue) || isFormatErr(unpackErr) {
			return 0, sandbox.InvalidArgument(sandbox.ReasonImageInvalid,
				"image %q: layer %s is not a valid or safe layer tar: %w", ref, layerID, unpackErr)
		}
		return 0, sandbox.Internal("image %q: unpacking layer %s into the image cache: %w", ref, layerID, unpackErr)
	case hex.EncodeToString(diffHash.Sum(nil)) != src.diffID.Hex:
		return 0, sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonDigestMismatch,
			"image %q: layer %s unpacks to sha256:%x, but the image config says %s; nothing was cached",
			ref, layerID, diffHash.Sum(nil), src.diffID)
	}

	emit(Progress{Ref: ref, Layer: layerID, Done: cr.n, Total: src.size, Status: StatusUnpacking})
	if err := s.commitLayer(src.diffID, dir, size); err != nil {
		return 0, sandbox.Internal("image %q: storing layer %s: %w", ref, layerID, err)
	}
	return size, nil
}

// commitLayer moves a verified layer dir into place: its record first, then
// the dir, so a dir under l/ always has its record (a record without a dir
// is not a cached layer, and GC removes it).
func (s *Store) commitLayer(diffID v1.Hash, dir string, size int64) error {
	final := s.layerDir(diffID.String())
	var lr layerRecord
	if err := readJSON(final+".json", &lr); err == nil && lr.DiffID != diffID.String() {
		return fmt.Errorf("layer %s collides with cached layer %s on the short id %s", diffID, lr.DiffID, shortID(lr.DiffID))
	}
	if err := writeJSON(final+".json", layerRecord{DiffID: diffID.String(), Size: size}); err != nil {
		return err
	}
	if err := os.Rename(dir, final); err != nil {
		if _, ok := s.layerCached(diffID); ok {
			return nil // another process won the race with the same content
		}
		return err
	}
	return nil
}

// decompress sniffs the compression of a blob from its magic bytes (media
// types lie; content does not).
func decompress(r *bufio.Reader) (io.ReadCloser, error) {
	magic, _ := r.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(r)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return io.NopCloser(r), nil
}

// isFormatErr reports a malformed compressed or tar stream, as opposed to
// a failure of the host's filesystem.
func isFormatErr(err error) bool {
	var errno syscall.Errno
	return !isPathErr(err) && !errors.As(err, &errno)
}

func isPathErr(err error) bool {
	var pe *os.PathError
	var le *os.LinkError
	return errors.As(err, &pe) || errors.As(err, &le)
}

// countingReader counts bytes, emits throttled progress, and remembers the
// first read error of the source (as opposed to errors of what reads it).
type countingReader struct {
	r        io.Reader
	ctx      context.Context
	emit     func(done int64)
	n, last  int64
	max      int64 // bytes the blob may have; 0: unknown
	err      error
	reported bool
}

// errBlobTooLong is a blob with more bytes than its descriptor declares.
var errBlobTooLong = errors.New("the blob is longer than its declared size")

func (c *countingReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		c.err = err
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.max > 0 && c.n > c.max {
		// No need to read on: it cannot match its digest. A registry
		// that sends without end is cut off here.
		c.err = errBlobTooLong
		return n, errBlobTooLong
	}
	if c.n-c.last >= progressEvery {
		c.last = c.n
		c.emit(c.n)
	}
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// report emits the final count once.
func (c *countingReader) report() {
	if !c.reported && c.n != c.last {
		c.emit(c.n)
	}
	c.reported = true
}
