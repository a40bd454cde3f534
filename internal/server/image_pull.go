package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/image"
)

// Pull implements ImageService.Pull: the pull runs in its own goroutine
// while this one forwards its progress, so a slow client slows the stream,
// never the pull. Any authenticated tenant may pull.
func (s *imageService) Pull(ctx context.Context, req *connect.Request[sbxv1.PullImageRequest], stream *connect.ServerStream[sbxv1.PullImageResponse]) error {
	ref := req.Msg.GetRef()
	if err := validateImageRef(ref); err != nil {
		return err
	}
	q := newProgressQueue()
	defer q.stop()
	type result struct {
		img *image.Image
		err error
	}
	done := make(chan result, 1)
	go func() {
		img, err := s.images.Pull(ctx, ref, q.add)
		done <- result{img, err}
	}()
	send := func() error {
		for _, p := range q.take() {
			if err := stream.Send(&sbxv1.PullImageResponse{Event: &sbxv1.PullImageResponse_Progress{Progress: progressToWire(p)}}); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		select {
		case <-q.wake:
			if err := send(); err != nil {
				// The client went away: the pull ends with ctx (or goes on
				// for other callers of the same image).
				<-done
				return err
			}
		case r := <-done:
			if r.err != nil {
				return r.err
			}
			if err := send(); err != nil {
				return err
			}
			return stream.Send(&sbxv1.PullImageResponse{Event: &sbxv1.PullImageResponse_Image{Image: imageToWire(r.img)}})
		}
	}
}
