package server

import (
	"context"
	"sync"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/image"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// ImageStore is the part of the image store (*image.Store) that the
// ImageService serves.
type ImageStore interface {
	Pull(ctx context.Context, ref string, progress func(image.Progress)) (*image.Image, error)
	List(ctx context.Context) ([]*image.Image, error)
	Remove(ctx context.Context, ref string) error
	Import(ctx context.Context, path string, progress func(image.Progress)) ([]*image.Image, error)
	GC(ctx context.Context) (removedLayers int, err error)
}

// Image service bounds.
const (
	// maxImageRefLen bounds a reference, as Create does.
	maxImageRefLen = 512
	// DefaultMaxImportBytes is the default bound of one imported tarball.
	DefaultMaxImportBytes = 8 << 30
)

// imageService implements sbxv1connect.ImageServiceHandler.
type imageService struct {
	*deps
	images    ImageStore
	admins    map[string]bool
	importDir string
	maxImport int64
}

// requireAdmin refuses callers that may not change the image cache, which
// every tenant of the server shares.
func (s *imageService) requireAdmin(ctx context.Context, what string) error {
	if s.admins[tenant(ctx)] {
		return nil
	}
	return sandbox.Errorf(sandbox.ErrPermissionDenied, sandbox.ReasonImageAdminRequired,
		"%s changes the image cache that every tenant shares, so only image admins may call it; ask the server's operator (or add your tenant to imageAdmins)", what)
}

func validateImageRef(ref string) error {
	if ref == "" {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidImageRef, "no image reference given: name one like busybox or python:3.11")
	}
	if len(ref) > maxImageRefLen {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidImageRef, "image reference is %d characters: at most %d", len(ref), maxImageRefLen)
	}
	return nil
}

func imageToWire(img *image.Image) *sbxv1.Image {
	return &sbxv1.Image{Ref: img.Ref, Digest: img.Digest, Size: img.Size, Created: ts(img.Created), Layers: int32(len(img.Layers))}
}

func progressToWire(p image.Progress) *sbxv1.ImageProgress {
	return &sbxv1.ImageProgress{Ref: p.Ref, Layer: p.Layer, Done: p.Done, Total: p.Total, Status: p.Status}
}

// progressQueue decouples the store's progress callbacks from the stream:
// the callback never blocks on a slow client, keeps only the latest event
// per layer (so a fast download cannot queue up thousands of events), and
// may safely be called after the handler has returned (the image store's
// shared pulls can emit late).
type progressQueue struct {
	mu      sync.Mutex
	order   []string
	latest  map[string]image.Progress
	wake    chan struct{}
	stopped bool
}

func newProgressQueue() *progressQueue {
	return &progressQueue{latest: map[string]image.Progress{}, wake: make(chan struct{}, 1)}
}

func (q *progressQueue) add(p image.Progress) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stopped {
		return
	}
	if _, ok := q.latest[p.Layer]; !ok {
		q.order = append(q.order, p.Layer)
	}
	q.latest[p.Layer] = p
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns the pending events in first-seen order and empties the queue.
func (q *progressQueue) take() []image.Progress {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]image.Progress, 0, len(q.order))
	for _, k := range q.order {
		out = append(out, q.latest[k])
	}
	q.order, q.latest = q.order[:0], map[string]image.Progress{}
	return out
}

// stop drops every later event.
func (q *progressQueue) stop() {
	q.mu.Lock()
	q.stopped = true
	q.mu.Unlock()
}
