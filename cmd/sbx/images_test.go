package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbx-run/sbx"
)

func TestImagesPullLsRm(t *testing.T) {
	c := newCLI(t)
	out := c.must("images", "pull", "busybox:1")
	for _, want := range []string{"busybox:1: resolving\n", "sha256:aaaa: downloading (1.0 KiB)\n", "sha256:bbbb: unpacking (1.0 KiB)\n", "pulled busybox:1 ("} {
		if !strings.Contains(out, want) {
			t.Fatalf("pull output lacks %q:\n%s", want, out)
		}
	}
	// One line per status change, not one per progress event.
	if n := strings.Count(out, "sha256:aaaa: downloading"); n != 1 {
		t.Fatalf("%d downloading lines for one layer:\n%s", n, out)
	}
	if out := c.must("images", "pull", "-q", "alpine:3"); out != "alpine:3\n" {
		t.Fatalf("pull -q printed %q", out)
	}
	if code, _, errOut := c.run("", "images", "pull", "nosuch:1"); code != 1 || !strings.Contains(errOut, "IMAGE_NOT_FOUND") {
		t.Fatalf("pull of a missing image: exit %d, stderr %q", code, errOut)
	}

	ls := c.must("images", "ls")
	if !strings.HasPrefix(ls, "REF") || !strings.Contains(ls, "alpine:3") || !strings.Contains(ls, "2.0 KiB") {
		t.Fatalf("images ls:\n%s", ls)
	}
	var views []imageJSON
	if err := json.Unmarshal([]byte(c.must("images", "ls", "--json")), &views); err != nil || len(views) != 2 ||
		views[0].Ref != "alpine:3" || views[1].Layers != 2 || !strings.HasPrefix(views[1].Digest, "sha256:") {
		t.Fatalf("images ls --json: %v %+v", err, views)
	}

	if out := c.must("images", "rm", "busybox:1", "alpine:3"); out != "busybox:1\nalpine:3\n" {
		t.Fatalf("images rm printed %q", out)
	}
	if code, _, errOut := c.run("", "images", "rm", "inuse"); code != 1 || !strings.Contains(errOut, "IMAGE_IN_USE") {
		t.Fatalf("rm of an image in use: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := c.run("", "images", "pull"); code != 2 {
		t.Fatalf("pull without a reference: exit %d, want 2", code)
	}
}

func TestImagesImport(t *testing.T) {
	c := newCLI(t)
	tarball := filepath.Join(t.TempDir(), "img.tar")
	if err := os.WriteFile(tarball, make([]byte, 3000), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := c.must("images", "import", tarball); !strings.HasPrefix(out, "imported imported:latest (") || !strings.Contains(out, "2.9 KiB") {
		t.Fatalf("import printed %q", out)
	}
	code, out, errOut := c.run(strings.Repeat("x", 100), "images", "import", "-")
	if code != 0 || !strings.Contains(out, "100 B") {
		t.Fatalf("import from stdin: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, errOut := c.run("", "images", "import", filepath.Join(t.TempDir(), "missing.tar")); code != 1 || !strings.Contains(errOut, "cannot read") {
		t.Fatalf("import of a missing file: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := c.run("", "images", "import", t.TempDir()); code != 2 {
		t.Fatalf("import of a directory: exit %d, want 2", code)
	}
}

func TestPullProgressOnTerminal(t *testing.T) {
	var b bytes.Buffer
	p := newPullProgress(&b, true)
	p.width = 80
	p.update(sbx.ImageProgress{Ref: "r", Status: sbx.ImageStatusResolving})
	p.update(sbx.ImageProgress{Layer: "sha256:" + strings.Repeat("a", 64), Done: 0, Total: 4096, Status: sbx.ImageStatusDownloading})
	p.update(sbx.ImageProgress{Layer: "sha256:" + strings.Repeat("b", 64), Done: 2048, Total: 4096, Status: sbx.ImageStatusDownloading})
	b.Reset()
	p.update(sbx.ImageProgress{Layer: "sha256:" + strings.Repeat("a", 64), Done: 4096, Total: 4096, Status: sbx.ImageStatusUnpacking})
	got := b.String()
	// Up over both lines, then both redrawn: a full bar and a half one.
	want := "\x1b[2A\x1b[2Kaaaaaaaaaaaa  [" + strings.Repeat("=", barWidth) + "]  4.0 KiB / 4.0 KiB  unpacking\n" +
		"\x1b[2Kbbbbbbbbbbbb  [" + strings.Repeat("=", barWidth/2) + ">" + strings.Repeat(" ", barWidth/2-1) + "]  2.0 KiB / 4.0 KiB  downloading\n"
	if got != want {
		t.Fatalf("redraw\n got %q\nwant %q", got, want)
	}
	for _, l := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		if len(strings.TrimPrefix(strings.TrimPrefix(l, "\x1b[2A"), "\x1b[2K")) >= 80 {
			t.Fatalf("line wider than the terminal: %q", l)
		}
	}
	// The image-wide end closes every bar.
	b.Reset()
	p.update(sbx.ImageProgress{Ref: "r", Status: sbx.ImageStatusDone})
	if got := b.String(); strings.Count(got, "4.0 KiB / 4.0 KiB  done\n") != 2 {
		t.Fatalf("after done:\n%q", got)
	}
}

func TestExecDoubleDash(t *testing.T) {
	c := newCLI(t)
	id := strings.TrimSpace(c.must("run", "-d"))
	if out := c.must("exec", id, "--", "echo", "hi"); out != "hi\n" {
		t.Fatalf("exec ID -- echo hi printed %q", out)
	}
	if out := c.must("exec", "--", id, "echo", "--", "x"); out != "-- x\n" {
		t.Fatalf("exec -- ID echo -- x printed %q", out)
	}
	if out := c.must("exec", id, "--", "echo", "--"); out != "--\n" {
		t.Fatalf("a later -- is the command's: printed %q", out)
	}
	if code, _, errOut := c.run("", "exec", id, "--"); code != 2 || !strings.Contains(errOut, "no command") {
		t.Fatalf("exec ID --: exit %d, stderr %q", code, errOut)
	}
}

// TestRunImageBeforeDash checks that `sbx run IMAGE -- CMD` (docker's
// order) is a usage error naming --image, not a sandbox running the
// image's name as its command.
func TestRunImageBeforeDash(t *testing.T) {
	c := newCLI(t)
	code, _, errOut := c.run("", "run", "busybox", "--", "echo", "hi")
	if code != 2 || !strings.Contains(errOut, "--image busybox -- echo hi") {
		t.Fatalf("run busybox -- echo hi: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := c.run("", "run", "--rm", "--", "exit", "0"); code != 0 {
		t.Fatalf("run -- exit 0: exit %d, stderr %q", code, errOut)
	}
}
