package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// Remove implements ImageService.Remove (image admins only). The store
// refuses an image that sandboxes use (IMAGE_IN_USE).
func (s *imageService) Remove(ctx context.Context, req *connect.Request[sbxv1.RemoveImageRequest]) (*connect.Response[sbxv1.RemoveImageResponse], error) {
	if err := s.requireAdmin(ctx, "removing an image"); err != nil {
		return nil, err
	}
	ref := req.Msg.GetRef()
	if err := validateImageRef(ref); err != nil {
		return nil, err
	}
	if err := s.images.Remove(ctx, ref); err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.RemoveImageResponse{}), nil
}
