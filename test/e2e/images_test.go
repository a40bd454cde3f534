package e2e

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/testenv"
)

// TestImages drives `sbx images` through the real binary: pull from the
// mirror, ls, import of a docker-save tarball, a sandbox from the imported
// image, rm refused while it runs and allowed after, and who may do what.
func TestImages(t *testing.T) {
	// The test registry is also reachable by its own name, so that a pull
	// of a missing image gets its answer there and never falls back to
	// docker.io.
	reg := testRegistry(t)
	s := startServer(t, "--insecure-registry", reg)

	out, errOut, code := s.cli("", "images", "pull", "busybox")
	if code != 0 || !strings.Contains(out, "pulled docker.io/library/busybox:latest (") || !strings.Contains(out, ": downloading") {
		t.Fatalf("sbx images pull: code %d stdout %q stderr %q", code, out, errOut)
	}
	var listed []struct {
		Ref    string `json:"ref"`
		Digest string `json:"digest"`
		Size   int64  `json:"size"`
	}
	out, _, code = s.cli("", "images", "ls", "--json")
	if err := json.Unmarshal([]byte(out), &listed); code != 0 || err != nil || len(listed) != 1 ||
		listed[0].Ref != "docker.io/library/busybox:latest" || listed[0].Size == 0 {
		t.Fatalf("sbx images ls --json: code %d %v %q", code, err, out)
	}
	if _, errOut, code := s.cli("", "images", "pull", reg+"/library/nosuch:1"); code != 1 || !strings.Contains(errOut, "IMAGE_NOT_FOUND") {
		t.Errorf("pull of a missing image: code %d stderr %q; want 1 and IMAGE_NOT_FOUND", code, errOut)
	}

	// Import a docker-save tarball under a name no registry has.
	tarball := testenv.SaveTarball(t, filepath.Join(t.TempDir(), "imported.tar"), "example.test/e2e/imported:v1", testenv.BusyboxImage(t))
	out, errOut, code = s.cli("", "images", "import", tarball)
	if code != 0 || !strings.Contains(out, "imported example.test/e2e/imported:v1 (") {
		t.Fatalf("sbx images import: code %d stdout %q stderr %q", code, out, errOut)
	}
	out, _, code = s.cli("", "run", "--rm", "--image", "example.test/e2e/imported:v1", "--", "sh", "-c", "echo from the imported image")
	if code != 0 || out != "from the imported image\n" {
		t.Fatalf("run from the imported image: code %d %q", code, out)
	}

	// rm is refused while a sandbox uses the image.
	out, _, _ = s.cli("", "run", "-d", "--image", "example.test/e2e/imported:v1")
	id := strings.TrimSpace(out)
	if out, _, code := s.cli("", "exec", id, "--", "echo", "dash"); code != 0 || out != "dash\n" {
		t.Errorf("sbx exec ID -- echo dash: code %d %q", code, out)
	}
	if _, errOut, code := s.cli("", "images", "rm", "example.test/e2e/imported:v1"); code != 1 || !strings.Contains(errOut, "IMAGE_IN_USE") {
		t.Errorf("rm of an image in use: code %d stderr %q", code, errOut)
	}
	if _, errOut, code := s.cli("", "rm", "-f", id); code != 0 {
		t.Fatalf("sbx rm -f: code %d %s", code, errOut)
	}
	if out, errOut, code := s.cli("", "images", "rm", "example.test/e2e/imported:v1"); code != 0 || out != "example.test/e2e/imported:v1\n" {
		t.Errorf("sbx images rm: code %d stdout %q stderr %q", code, out, errOut)
	}
	out, _, _ = s.cli("", "images", "ls", "-q")
	if out != "docker.io/library/busybox:latest\n" {
		t.Errorf("images after rm: %q", out)
	}

	// Another tenant may pull and list, but not change the shared cache.
	ctx := ctxT(t, 2*time.Minute)
	other := s.client(s.newTenant("other"))
	var events int
	if _, err := other.PullImage(ctx, "busybox", func(sbx.ImageProgress) { events++ }); err != nil || events == 0 {
		t.Errorf("another tenant's pull: %v (%d progress events)", err, events)
	}
	if list, err := other.ListImages(ctx); err != nil || len(list) != 1 {
		t.Errorf("another tenant's list: %v %+v", err, list)
	}
	if err := other.RemoveImage(ctx, "busybox"); !errors.Is(err, sbx.ErrPermissionDenied) || sbx.ReasonOf(err) != "IMAGE_ADMIN_REQUIRED" {
		t.Errorf("another tenant's rm: %v", err)
	}
	if n, err := s.client().GCImages(ctx); err != nil || n != 0 {
		// The imported image's only layer is busybox's, which the pulled
		// image still references.
		t.Errorf("GC: %d layers, %v", n, err)
	}

	// Pulls are counted by result.
	body := metrics(t, s)
	for _, want := range []string{`sbx_image_pulls_total{result="ok"} 2`, `sbx_image_pulls_total{result="IMAGE_NOT_FOUND"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
