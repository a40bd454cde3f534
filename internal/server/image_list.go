package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// List implements ImageService.List. Any authenticated tenant may list.
func (s *imageService) List(ctx context.Context, _ *connect.Request[sbxv1.ListImagesRequest]) (*connect.Response[sbxv1.ListImagesResponse], error) {
	imgs, err := s.images.List(ctx)
	if err != nil {
		return nil, err
	}
	resp := &sbxv1.ListImagesResponse{}
	for _, img := range imgs {
		resp.Images = append(resp.Images, imageToWire(img))
	}
	return connect.NewResponse(resp), nil
}
