package server

import (
	"context"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Remove implements ImageService.Remove (image admins only). The store
// refuses an image that sandboxes use (IMAGE_IN_USE), deleted ones whose
// teardown is pending included; those are waited for first.
func (s *imageService) Remove(ctx context.Context, req *connect.Request[sbxv1.RemoveImageRequest]) (*connect.Response[sbxv1.RemoveImageResponse], error) {
	if err := s.requireAdmin(ctx, "removing an image"); err != nil {
		return nil, err
	}
	ref := req.Msg.GetRef()
	if err := validateImageRef(ref); err != nil {
		return nil, err
	}
	err := s.images.Remove(ctx, ref)
	if sandbox.ReasonOf(err) == sandbox.ReasonImageInUse && s.m != nil {
		// A deleted sandbox holds its image until its teardown, which runs
		// in the background moments after the Delete answered: wait (a
		// bounded time) for the pending ones, then try once more.
		wctx, cancel := context.WithTimeout(ctx, imageRemoveWait)
		werr := s.m.AwaitTeardowns(wctx)
		cancel()
		if werr == nil {
			err = s.images.Remove(ctx, ref)
		}
	}
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.RemoveImageResponse{}), nil
}

// imageRemoveWait bounds how long removing an image waits for the
// teardowns of deleted sandboxes that still hold it.
const imageRemoveWait = 10 * time.Second
