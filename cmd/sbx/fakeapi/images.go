package fakeapi

import (
	"context"
	"sort"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
)

// fakeImages implements ImageService in memory. Pull of a reference that
// contains "nosuch" fails with IMAGE_NOT_FOUND; any other pull streams two
// layers of progress and stores the image under the reference as given.
// Removing "inuse" fails with IMAGE_IN_USE. Import stores one image,
// "imported:latest", whose size is the number of bytes received.
type fakeImages struct {
	sbxv1connect.UnimplementedImageServiceHandler
	f *Server
}

// digestFor makes a stable fake digest from a reference.
func digestFor(ref string) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 64)
	for i := range b {
		b[i] = hex[(int(ref[i%len(ref)])+i)%16]
	}
	return "sha256:" + string(b)
}

func (fi fakeImages) Pull(_ context.Context, req *connect.Request[sbxv1.PullImageRequest], stream *connect.ServerStream[sbxv1.PullImageResponse]) error {
	ref := req.Msg.GetRef()
	if ref == "" {
		return fakeErr(connect.CodeInvalidArgument, "INVALID_IMAGE_REFERENCE", "no image reference given", 0)
	}
	if strings.Contains(ref, "nosuch") {
		return fakeErr(connect.CodeNotFound, "IMAGE_NOT_FOUND", "image \""+ref+"\" not found: check the name and tag", 0)
	}
	progress := func(layer string, done, total int64, status string) error {
		return stream.Send(&sbxv1.PullImageResponse{Event: &sbxv1.PullImageResponse_Progress{Progress: &sbxv1.ImageProgress{
			Ref: ref, Layer: layer, Done: done, Total: total, Status: status}}})
	}
	if err := progress("", 0, 0, "resolving"); err != nil {
		return err
	}
	for _, l := range []string{"sha256:aaaa", "sha256:bbbb"} {
		for _, done := range []int64{0, 512, 1024} {
			if err := progress(l, done, 1024, "downloading"); err != nil {
				return err
			}
		}
		if err := progress(l, 1024, 1024, "unpacking"); err != nil {
			return err
		}
	}
	img := &sbxv1.Image{Ref: ref, Digest: digestFor(ref), Size: 2048, Layers: 2, Created: timestamppb.Now()}
	fi.f.mu.Lock()
	fi.f.images[ref] = img
	fi.f.mu.Unlock()
	return stream.Send(&sbxv1.PullImageResponse{Event: &sbxv1.PullImageResponse_Image{Image: img}})
}

func (fi fakeImages) List(context.Context, *connect.Request[sbxv1.ListImagesRequest]) (*connect.Response[sbxv1.ListImagesResponse], error) {
	fi.f.mu.Lock()
	defer fi.f.mu.Unlock()
	resp := &sbxv1.ListImagesResponse{}
	for _, img := range fi.f.images {
		resp.Images = append(resp.Images, img)
	}
	sort.Slice(resp.Images, func(i, j int) bool { return resp.Images[i].Ref < resp.Images[j].Ref })
	return connect.NewResponse(resp), nil
}

func (fi fakeImages) Remove(_ context.Context, req *connect.Request[sbxv1.RemoveImageRequest]) (*connect.Response[sbxv1.RemoveImageResponse], error) {
	ref := req.Msg.GetRef()
	if ref == "inuse" {
		return nil, fakeErr(connect.CodeFailedPrecondition, "IMAGE_IN_USE", "image \"inuse\" is used by 1 sandbox(es) (sb-1); stop them first", 0)
	}
	fi.f.mu.Lock()
	defer fi.f.mu.Unlock()
	if _, ok := fi.f.images[ref]; !ok {
		return nil, fakeErr(connect.CodeNotFound, "IMAGE_NOT_FOUND", "image \""+ref+"\" is not in the image store", 0)
	}
	delete(fi.f.images, ref)
	return connect.NewResponse(&sbxv1.RemoveImageResponse{}), nil
}

func (fi fakeImages) Import(_ context.Context, stream *connect.ClientStream[sbxv1.ImportImageRequest]) (*connect.Response[sbxv1.ImportImageResponse], error) {
	var size int64
	for stream.Receive() {
		if stream.Msg().GetAbort() {
			return nil, fakeErr(connect.CodeInvalidArgument, "IMAGE_IMPORT_ABORTED", "the client abandoned the import", 0)
		}
		size += int64(len(stream.Msg().GetData()))
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, fakeErr(connect.CodeInvalidArgument, "INVALID_ARGUMENT", "import got no data", 0)
	}
	img := &sbxv1.Image{Ref: "imported:latest", Digest: digestFor("imported"), Size: size, Layers: 1}
	fi.f.mu.Lock()
	fi.f.images[img.Ref] = img
	fi.f.mu.Unlock()
	return connect.NewResponse(&sbxv1.ImportImageResponse{Images: []*sbxv1.Image{img}}), nil
}

func (fi fakeImages) GC(context.Context, *connect.Request[sbxv1.GCImagesRequest]) (*connect.Response[sbxv1.GCImagesResponse], error) {
	return connect.NewResponse(&sbxv1.GCImagesResponse{RemovedLayers: 3}), nil
}
