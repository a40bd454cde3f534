package sbx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// ImageInfo describes an image in the server's cache, which all of its tenants share.
type ImageInfo struct {
	// Ref is the normalized reference, e.g. "docker.io/library/python:3.11";
	// a bare "sha256:..." for an imported image that had no name.
	Ref string
	// Digest is the manifest digest ("sha256:...").
	Digest string
	// Size is the number of unpacked bytes.
	Size int64
	// Layers is the number of layers.
	Layers int
	// Created is the image's creation time (zero when it has none).
	Created time.Time
}

// ImageProgress is one progress event of PullImage.
type ImageProgress struct {
	// Ref is the normalized reference being pulled.
	Ref string
	// Layer is a layer digest; empty for events about the whole image.
	Layer string
	// Done and Total are the layer's bytes transferred so far and its size
	// (compressed, as transferred); Total is 0 when unknown.
	Done, Total int64
	// Status is one of the ImageStatus* values.
	Status string
}

// The ImageProgress statuses.
const (
	ImageStatusResolving   = "resolving"
	ImageStatusDownloading = "downloading"
	ImageStatusUnpacking   = "unpacking"
	ImageStatusCached      = "cached"
	ImageStatusDone        = "done"
)

func imageFromWire(w *sbxv1.Image) ImageInfo {
	img := ImageInfo{Ref: w.GetRef(), Digest: w.GetDigest(), Size: w.GetSize(), Layers: int(w.GetLayers())}
	if w.GetCreated() != nil {
		img.Created = w.GetCreated().AsTime()
	}
	return img
}

// PullImage pulls ref into the server's cache (again, if its tag moved) and
// returns the stored image. progress, when not nil, receives per-layer
// progress events as they arrive, from the calling goroutine. Any tenant
// may pull.
func (c *Client) PullImage(ctx context.Context, ref string, progress func(ImageProgress)) (ImageInfo, error) {
	if ref == "" {
		return ImageInfo{}, errorf(ErrInvalidArgument, "INVALID_IMAGE_REFERENCE", "no image reference given: name one like busybox or python:3.11")
	}
	stream, err := c.images.Pull(ctx, connect.NewRequest(&sbxv1.PullImageRequest{Ref: ref}))
	if err != nil {
		return ImageInfo{}, c.fromWire(err)
	}
	defer stream.Close()
	var img *ImageInfo
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().(type) {
		case *sbxv1.PullImageResponse_Progress:
			if progress != nil {
				p := ev.Progress
				progress(ImageProgress{Ref: p.GetRef(), Layer: p.GetLayer(), Done: p.GetDone(), Total: p.GetTotal(), Status: p.GetStatus()})
			}
		case *sbxv1.PullImageResponse_Image:
			i := imageFromWire(ev.Image)
			img = &i
		}
	}
	if err := stream.Err(); err != nil {
		return ImageInfo{}, c.fromWire(err)
	}
	if img == nil {
		return ImageInfo{}, errorf(ErrInternal, "INTERNAL", "the server ended the pull of %s without the image", ref)
	}
	return *img, nil
}

// ListImages returns the images in the server's cache, sorted by reference.
func (c *Client) ListImages(ctx context.Context) ([]ImageInfo, error) {
	resp, err := c.images.List(ctx, connect.NewRequest(&sbxv1.ListImagesRequest{}))
	if err != nil {
		return nil, c.fromWire(err)
	}
	out := make([]ImageInfo, 0, len(resp.Msg.GetImages()))
	for _, w := range resp.Msg.GetImages() {
		out = append(out, imageFromWire(w))
	}
	return out, nil
}

// RemoveImage removes ref (or, for a "sha256:..." digest, every reference
// to that image) from the server's cache. It fails with
// ErrFailedPrecondition (reason IMAGE_IN_USE) while sandboxes use the image,
// and with ErrPermissionDenied unless the caller is an image admin.
func (c *Client) RemoveImage(ctx context.Context, ref string) error {
	_, err := c.images.Remove(ctx, connect.NewRequest(&sbxv1.RemoveImageRequest{Ref: ref}))
	return c.fromWire(err)
}

// GCImages frees the layers that no cached image references and returns
// how many were removed (image admins only).
func (c *Client) GCImages(ctx context.Context) (int, error) {
	resp, err := c.images.GC(ctx, connect.NewRequest(&sbxv1.GCImagesRequest{}))
	if err != nil {
		return 0, c.fromWire(err)
	}
	return int(resp.Msg.GetRemovedLayers()), nil
}

// ImportImage sends a tarball to the server's cache: an OCI archive (an
// OCI image layout in a tar, as `docker save` writes since v25) or a legacy
// docker-save tar. It returns the images stored, named by the tarball's
// annotations or tags. If reading r fails, the import is abandoned and
// nothing is stored. Image admins only.
func (c *Client) ImportImage(ctx context.Context, r io.Reader) ([]ImageInfo, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream := c.images.Import(ctx)
	send := func(req *sbxv1.ImportImageRequest) error {
		err := stream.Send(req)
		if errors.Is(err, io.EOF) {
			// The server ended the call; its error comes with the response.
			_, err = stream.CloseAndReceive()
			if err == nil {
				err = errorf(ErrInternal, "INTERNAL", "the server ended the import early")
			}
		}
		return err
	}
	buf := make([]byte, fileChunk)
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if err := send(&sbxv1.ImportImageRequest{Data: buf[:n]}); err != nil {
				return nil, c.fromWire(err)
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			// Tell the server to drop what it has: a cut-short tarball
			// must never be stored.
			stream.Send(&sbxv1.ImportImageRequest{Abort: true})
			stream.CloseAndReceive()
			return nil, &Error{Kind: ErrInvalidArgument, Reason: "SOURCE_READ_FAILED",
				Message: fmt.Sprintf("reading the image tarball failed (%v): nothing was imported", rerr), Err: rerr}
		}
	}
	resp, err := stream.CloseAndReceive()
	if err != nil {
		return nil, c.fromWire(err)
	}
	out := make([]ImageInfo, 0, len(resp.Msg.GetImages()))
	for _, w := range resp.Msg.GetImages() {
		out = append(out, imageFromWire(w))
	}
	return out, nil
}
