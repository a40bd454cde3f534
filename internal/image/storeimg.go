package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Bounds on an image's metadata.
const (
	maxConfigSize = 8 << 20
	// maxLayers keeps the overlay mount option string under a page.
	maxLayers = 128
	// parallelLayers is how many layers of one image download at once.
	parallelLayers = 3
)

// store puts img into the cache under ref (a normalized reference, or a bare
// digest for an unnamed imported image): its layers (each verified and
// unpacked once), its manifest record and its index entry. uncompressedOnly
// is for sources whose compressed form would have to be computed (docker
// save tarballs): their layers are read uncompressed and checked against
// their diffIDs only.
func (s *Store) store(ctx context.Context, ref string, img v1.Image, uncompressedOnly bool, emit func(Progress)) (*Image, error) {
	digest, err := img.Digest()
	if err != nil {
		return nil, classify(ref, "the registry", err)
	}
	if cached, ok := s.cached(digest.String()); ok {
		cached.Ref = ref
		return cached, s.index(ref, digest.String())
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, classify(ref, "the registry", err)
	}
	if m.Config.Size <= 0 && !uncompressedOnly {
		// Read with no size, the config blob would be read whole
		// before its bound is checked.
		return nil, sandbox.InvalidArgument(sandbox.ReasonImageInvalid,
			"image %q: its manifest gives its config a size of %d bytes; it must be known", ref, m.Config.Size)
	}
	if m.Config.Size > maxConfigSize {
		return nil, sandbox.InvalidArgument(sandbox.ReasonImageInvalid,
			"image %q: its config blob is %d bytes, over the limit of %d", ref, m.Config.Size, maxConfigSize)
	}
	if len(m.Layers) > maxLayers {
		return nil, sandbox.InvalidArgument(sandbox.ReasonImageInvalid,
			"image %q has %d layers, over the limit of %d; flatten it", ref, len(m.Layers), maxLayers)
	}
	for i, l := range m.Layers {
		// A size the registry need not honour (unknown, negative) would
		// leave the download unbounded and the sum below meaningless.
		if !uncompressedOnly && l.Size <= 0 {
			return nil, sandbox.InvalidArgument(sandbox.ReasonImageInvalid,
				"image %q: its manifest gives layer %d a size of %d bytes; a layer's size must be known", ref, i, l.Size)
		}
	}
	if max := s.cfg.MaxImageBytes; max > 0 {
		var total int64
		for _, l := range m.Layers {
			total += l.Size
		}
		if total > max {
			return nil, tooLarge(ref, fmt.Sprintf("its layers are %d bytes compressed", total), max)
		}
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, digestErr(ref, "its config", err)
	}
	if len(raw) > maxConfigSize {
		return nil, sandbox.InvalidArgument(sandbox.ReasonImageInvalid,
			"image %q: its config is %d bytes, over the limit of %d", ref, len(raw), maxConfigSize)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, sandbox.InvalidArgument(sandbox.ReasonImageInvalid, "image %q: its config is not valid JSON: %w", ref, err)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, sandbox.InvalidArgument(sandbox.ReasonImageInvalid,
			"image %q: its manifest lists %d layers but its config %d", ref, len(m.Layers), len(cf.RootFS.DiffIDs))
	}
	if cf.OS != "" && cf.Architecture != "" && (cf.OS != s.platform.OS || cf.Architecture != s.platform.Architecture) {
		return nil, sandbox.NotFound(sandbox.ReasonPlatformNotAvailable,
			"image %q is built for %s/%s, not for this host's %s; pick an image built for this host",
			ref, cf.OS, cf.Architecture, s.platform.String())
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, classify(ref, "the registry", err)
	}

	sizes := make([]int64, len(layers))
	errs := make([]error, len(layers))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, parallelLayers)
	var wg sync.WaitGroup
	for i, l := range layers {
		src := layerSource{open: l.Compressed, digest: m.Layers[i].Digest, size: m.Layers[i].Size, diffID: cf.RootFS.DiffIDs[i]}
		if uncompressedOnly {
			src = layerSource{open: l.Uncompressed, diffID: cf.RootFS.DiffIDs[i]}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			sizes[i], errs[i] = s.ensureLayer(ctx, ref, src, emit)
			if errs[i] != nil {
				cancel() // one bad layer fails the image; stop the others
			}
		}()
	}
	wg.Wait()
	// Report the first real error, not the cancellations it caused.
	var first error
	for _, err := range errs {
		if err != nil && (first == nil || isCancel(first) && !isCancel(err)) {
			first = err
		}
	}
	if first != nil {
		return nil, classify(ref, "the registry", first)
	}

	rec := &manifestRecord{
		Digest: digest.String(),
		Config: sandbox.ImageConfig{
			Env: cf.Config.Env, WorkingDir: cf.Config.WorkingDir, User: cf.Config.User,
			Entrypoint: cf.Config.Entrypoint, Cmd: cf.Config.Cmd,
		},
		Created: cf.Created.Time,
	}
	for i, d := range cf.RootFS.DiffIDs {
		rec.DiffIDs = append(rec.DiffIDs, d.String())
		rec.Size += sizes[i]
	}
	if max := s.cfg.MaxImageBytes; max > 0 && rec.Size > max {
		// Its layers stay cached, used by no image, until GC.
		return nil, tooLarge(ref, fmt.Sprintf("its layers unpack to %d bytes", rec.Size), max)
	}
	if err := writeJSON(s.manifestFile(rec.Digest), rec); err != nil {
		return nil, sandbox.Internal("image %q: writing its record: %w", ref, err)
	}
	if err := s.index(ref, rec.Digest); err != nil {
		return nil, err
	}
	out, ok := s.image(ref, rec)
	if !ok {
		return nil, sandbox.Internal("image %q: a layer vanished right after it was stored; is GC running from another process?", ref)
	}
	return out, nil
}

// index points ref at a manifest digest in the tag index. A digest reference
// is indexed too, so List and Remove see it.
func (s *Store) index(ref, digest string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := writeJSON(s.refFile(ref), refRecord{Ref: ref, Digest: digest, Pulled: time.Now().UTC()}); err != nil {
		return sandbox.Internal("image %q: writing the index: %w", ref, err)
	}
	s.memMu.Lock()
	s.memRefs[ref] = digest
	s.memMu.Unlock()
	return nil
}

func isCancel(err error) bool {
	return errors.Is(err, context.Canceled) || sandbox.KindOf(err) == sandbox.ErrDeadlineExceeded
}

// digestErr classifies a failure to read a blob whose digest is known: the
// registry's own errors and network errors as such, anything else (a short
// read, a verification failure) as a digest mismatch.
func digestErr(ref, what string, err error) error {
	var te *transport.Error
	var se *sandbox.Error
	if errors.As(err, &se) || errors.As(err, &te) || isNetErr(err) || isCancel(err) {
		return classify(ref, "the registry", err)
	}
	return sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonDigestMismatch,
		"image %q: %s was cut short or does not match its digest: %w", ref, what, err)
}

// tooLarge is the error of an image over Config.MaxImageBytes.
func tooLarge(ref, what string, max int64) error {
	return sandbox.InvalidArgument(sandbox.ReasonImageTooLarge,
		"image %q is too large for this server: %s, over its limit of %d bytes (maxImageBytes in the server's config); use a smaller image",
		ref, what, max)
}
