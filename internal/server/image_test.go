package server_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
	"github.com/sbx-run/sbx/internal/image"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/testenv"
)

// newImageEnv serves a real image store that may pull from a registry on
// 127.0.0.1, and returns it with that registry's host.
func newImageEnv(t *testing.T, maxImport int64) (*env, *image.Store, string) {
	e, st, host, _ := newImageEnvSpool(t, maxImport)
	return e, st, host
}

// newImageEnvSpool is newImageEnv that also returns the import spool dir.
func newImageEnvSpool(t *testing.T, maxImport int64) (*env, *image.Store, string, string) {
	t.Helper()
	testenv.Require(t, true) // unpacking layers sets owners and device nodes
	host := testenv.Registry(t)
	st, err := image.New(image.Config{Root: filepath.Join(t.TempDir(), "images"), Insecure: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	return newEnv(t, options{images: st, maxImport: maxImport, importDir: spool}), st, host, spool
}

// pull runs Pull to its end and returns the progress events and the image.
func pull(c sbxv1connect.ImageServiceClient, ref string) ([]*sbxv1.ImageProgress, *sbxv1.Image, error) {
	s, err := c.Pull(context.Background(), connect.NewRequest(&sbxv1.PullImageRequest{Ref: ref}))
	if err != nil {
		return nil, nil, err
	}
	var progress []*sbxv1.ImageProgress
	var img *sbxv1.Image
	for s.Receive() {
		switch ev := s.Msg().Event.(type) {
		case *sbxv1.PullImageResponse_Progress:
			progress = append(progress, ev.Progress)
		case *sbxv1.PullImageResponse_Image:
			img = ev.Image
		}
	}
	return progress, img, s.Err()
}

func TestImagePullListRemove(t *testing.T) {
	e, st, host := newImageEnv(t, 0)
	ref := testenv.PushBusybox(t, host)
	admin, other := e.imageClient(e.keyA), e.imageClient(e.keyB)
	ctx := context.Background()

	// Any tenant may pull.
	progress, img, err := pull(other, ref)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if img == nil || img.Ref != ref || img.Layers != 1 || img.Size == 0 || len(img.Digest) != len("sha256:")+64 {
		t.Fatalf("pulled image %+v", img)
	}
	var layerEvents int
	for _, p := range progress {
		if p.Layer != "" && (p.Status == image.StatusDownloading || p.Status == image.StatusUnpacking || p.Status == image.StatusCached) {
			layerEvents++
		}
	}
	if layerEvents == 0 {
		t.Fatalf("no per-layer progress in %v", progress)
	}

	list, err := other.List(ctx, connect.NewRequest(&sbxv1.ListImagesRequest{}))
	if err != nil || len(list.Msg.Images) != 1 || list.Msg.Images[0].Digest != img.Digest {
		t.Fatalf("List: %v %+v", err, list)
	}

	_, err = other.Remove(ctx, connect.NewRequest(&sbxv1.RemoveImageRequest{Ref: ref}))
	wantCode(t, err, connect.CodePermissionDenied, sandbox.ReasonImageAdminRequired)
	_, err = other.GC(ctx, connect.NewRequest(&sbxv1.GCImagesRequest{}))
	wantCode(t, err, connect.CodePermissionDenied, sandbox.ReasonImageAdminRequired)

	if err := st.Use(img.Digest, "sb-user"); err != nil {
		t.Fatal(err)
	}
	_, err = admin.Remove(ctx, connect.NewRequest(&sbxv1.RemoveImageRequest{Ref: ref}))
	wantCode(t, err, connect.CodeFailedPrecondition, sandbox.ReasonImageInUse)
	if err := st.Release(img.Digest, "sb-user"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Remove(ctx, connect.NewRequest(&sbxv1.RemoveImageRequest{Ref: ref})); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	_, err = admin.Remove(ctx, connect.NewRequest(&sbxv1.RemoveImageRequest{Ref: ref}))
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonImageNotFound)
	gc, err := admin.GC(ctx, connect.NewRequest(&sbxv1.GCImagesRequest{}))
	if err != nil || gc.Msg.RemovedLayers != 1 {
		t.Fatalf("GC: %v %+v", err, gc)
	}
	list, _ = admin.List(ctx, connect.NewRequest(&sbxv1.ListImagesRequest{}))
	if len(list.Msg.Images) != 0 {
		t.Fatalf("images left after Remove: %+v", list.Msg.Images)
	}

	_, _, err = pull(other, host+"/library/nosuch:1")
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonImageNotFound)
	_, _, err = pull(other, "")
	wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonInvalidImageRef)
	_, _, err = pull(other, "Not A Ref")
	wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonInvalidImageRef)
}

// importFile streams a file to Import in chunks of chunk bytes.
func importFile(t *testing.T, c sbxv1connect.ImageServiceClient, path string, chunk int) (*sbxv1.ImportImageResponse, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := c.Import(context.Background())
	buf := make([]byte, chunk)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if serr := s.Send(&sbxv1.ImportImageRequest{Data: buf[:n]}); serr != nil {
				break // the server answered early; CloseAndReceive has its error
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	resp, err := s.CloseAndReceive()
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

func TestImageImport(t *testing.T) {
	e, _, _, spool := newImageEnvSpool(t, 64<<20)
	tarPath := testenv.SaveTarball(t, filepath.Join(t.TempDir(), "busybox.tar"), "example.test/tools/busybox:v1", testenv.BusyboxImage(t))
	admin, other := e.imageClient(e.keyA), e.imageClient(e.keyB)

	_, err := importFile(t, other, tarPath, 256<<10)
	wantCode(t, err, connect.CodePermissionDenied, sandbox.ReasonImageAdminRequired)

	resp, err := importFile(t, admin, tarPath, 256<<10)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if len(resp.Images) != 1 || resp.Images[0].Ref != "example.test/tools/busybox:v1" {
		t.Fatalf("imported %+v", resp.Images)
	}
	list, err := other.List(context.Background(), connect.NewRequest(&sbxv1.ListImagesRequest{}))
	if err != nil || len(list.Msg.Images) != 1 {
		t.Fatalf("List after import: %v %+v", err, list)
	}

	junk := filepath.Join(t.TempDir(), "junk.tar")
	os.WriteFile(junk, []byte("this is not a tar file at all"), 0o600)
	_, err = importFile(t, admin, junk, 1024)
	wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonImageInvalid)
	if left, _ := os.ReadDir(spool); len(left) != 0 {
		t.Fatalf("spool files left behind: %v", left)
	}
}

func TestImageImportBounded(t *testing.T) {
	e, _, _ := newImageEnv(t, 1<<20)
	tarPath := testenv.SaveTarball(t, filepath.Join(t.TempDir(), "busybox.tar"), "busybox:latest", testenv.BusyboxImage(t))
	_, err := importFile(t, e.imageClient(e.keyA), tarPath, 256<<10)
	wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonImportTooLarge)
}
