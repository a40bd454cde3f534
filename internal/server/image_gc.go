package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// GC implements ImageService.GC (image admins only).
func (s *imageService) GC(ctx context.Context, _ *connect.Request[sbxv1.GCImagesRequest]) (*connect.Response[sbxv1.GCImagesResponse], error) {
	if err := s.requireAdmin(ctx, "garbage-collecting images"); err != nil {
		return nil, err
	}
	n, err := s.images.GC(ctx)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.GCImagesResponse{RemovedLayers: int32(n)}), nil
}
