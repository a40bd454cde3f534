package sbx

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestImages(t *testing.T) {
	_, c := newFakeServer(t)
	ctx := context.Background()

	var events []ImageProgress
	img, err := c.PullImage(ctx, "busybox:1", func(p ImageProgress) { events = append(events, p) })
	if err != nil {
		t.Fatalf("PullImage: %v", err)
	}
	if img.Ref != "busybox:1" || img.Layers != 2 || img.Size != 2048 || img.Created.IsZero() {
		t.Fatalf("pulled %+v", img)
	}
	if len(events) != 9 || events[0].Status != ImageStatusResolving || events[2].Layer != "sha256:aaaa" || events[2].Done != 512 || events[2].Total != 1024 {
		t.Fatalf("progress events %+v", events)
	}
	if _, err := c.PullImage(ctx, "nosuch", nil); !errors.Is(err, ErrNotFound) || ReasonOf(err) != "IMAGE_NOT_FOUND" {
		t.Fatalf("pull of a missing image: %v", err)
	}
	if _, err := c.PullImage(ctx, "", nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("pull of no reference: %v", err)
	}

	imported, err := c.ImportImage(ctx, bytes.NewReader(make([]byte, 3<<20+5)))
	if err != nil || len(imported) != 1 || imported[0].Size != 3<<20+5 {
		t.Fatalf("ImportImage: %v %+v", err, imported)
	}
	list, err := c.ListImages(ctx)
	if err != nil || len(list) != 2 || list[0].Ref != "busybox:1" || list[1].Ref != "imported:latest" {
		t.Fatalf("ListImages: %v %+v", err, list)
	}

	if err := c.RemoveImage(ctx, "inuse"); !errors.Is(err, ErrFailedPrecondition) || ReasonOf(err) != "IMAGE_IN_USE" {
		t.Fatalf("remove of an image in use: %v", err)
	}
	if err := c.RemoveImage(ctx, "busybox:1"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveImage(ctx, "busybox:1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	if n, err := c.GCImages(ctx); err != nil || n != 3 {
		t.Fatalf("GCImages: %d %v", n, err)
	}
}

// A tarball that cannot be read to its end is never imported.
func TestImportImageAbortsOnReadError(t *testing.T) {
	_, c := newFakeServer(t)
	ctx := context.Background()
	r := io.MultiReader(bytes.NewReader(make([]byte, 2<<20)), iotest.ErrReader(errors.New("disk on fire")))
	if _, err := c.ImportImage(ctx, r); !errors.Is(err, ErrInvalidArgument) || ReasonOf(err) != "SOURCE_READ_FAILED" {
		t.Fatalf("import of an unreadable tarball: %v", err)
	}
	if list, err := c.ListImages(ctx); err != nil || len(list) != 0 {
		t.Fatalf("images after an aborted import: %v %+v", err, list)
	}
}

// Logs on a sandbox that has not started yet waits for it, as Exec and the
// file calls do, instead of failing with SANDBOX_NOT_RUNNING.
func TestLogsWaitsForStart(t *testing.T) {
	_, c := newFakeServer(t)
	ctx := context.Background()
	sb := runIdle(t, c, Command("exit", "0"))
	if st := sb.Info().State; st != StatePending {
		t.Fatalf("fresh sandbox is %s, want PENDING", st)
	}
	var out bytes.Buffer
	if err := c.FromID(sb.ID()).Logs(ctx, &out, nil, LogOptions{Follow: true}); err != nil {
		t.Fatalf("Logs on a PENDING sandbox: %v", err)
	}
	if out.String() != "main output\n" {
		t.Fatalf("logs %q", out.String())
	}
}
