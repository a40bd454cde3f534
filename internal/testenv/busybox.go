package testenv

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BusyboxPath is where Debian's busybox-static package installs the static
// busybox the test image is made from.
const BusyboxPath = "/bin/busybox"

// ImagePath is the PATH of the test images, the same as Docker's default.
const ImagePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var busybox struct {
	once sync.Once
	img  v1.Image
	err  error
}

// BusyboxImage returns a one-layer image made from the host's static busybox:
// /bin/busybox with a symlink per applet where `busybox --install -s` would
// put it, /etc/passwd and /etc/group with root and nobody, /tmp (1777),
// /root and /home; Env PATH and Cmd ["sh"]. It is built once per process and
// is identical (same digest) on every build from the same busybox.
func BusyboxImage(t testing.TB) v1.Image {
	t.Helper()
	Require(t, false, BusyboxPath)
	img, err := NewBusyboxImage()
	if err != nil {
		t.Fatalf("busybox test image: %v", err)
	}
	return img
}

// NewBusyboxImage is BusyboxImage for use outside tests.
func NewBusyboxImage() (v1.Image, error) {
	busybox.once.Do(func() { busybox.img, busybox.err = buildBusybox() })
	return busybox.img, busybox.err
}

func buildBusybox() (v1.Image, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("read %s (apt-get install busybox-static): %w", BusyboxPath, err)
	}
	// --list-full names each applet with the directory --install puts it in
	// (bin/ls, usr/sbin/chroot, ...).
	out, err := exec.Command(BusyboxPath, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", BusyboxPath, err)
	}
	entries := []entry{
		dirEntry("bin", 0o755),
		fileEntry("bin/busybox", 0o755, bin),
		dirEntry("tmp", 0o1777),
		dirEntry("root", 0o700),
		fileEntry("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")),
		fileEntry("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")),
	}
	dirs := map[string]bool{"bin": true, "tmp": true, "root": true}
	for _, d := range []string{"etc", "home", "dev", "proc", "sys", "var", "usr/bin", "usr/sbin", "sbin", "usr/local/bin"} {
		for p := d; p != "." && !dirs[p]; p = path.Dir(p) {
			dirs[p] = true
			entries = append(entries, dirEntry(p, 0o755))
		}
	}
	for _, applet := range strings.Fields(string(out)) {
		applet = strings.TrimPrefix(applet, "/")
		if applet == "bin/busybox" || !strings.Contains(applet, "/") {
			continue
		}
		for p := path.Dir(applet); p != "." && !dirs[p]; p = path.Dir(p) {
			dirs[p] = true
			entries = append(entries, dirEntry(p, 0o755))
		}
		entries = append(entries, symlinkEntry(applet, "/bin/busybox"))
	}
	var buf bytes.Buffer
	if err := writeEntries(&buf, entries); err != nil {
		return nil, err
	}
	tarBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	return newImage(layer, v1.Config{Env: []string{ImagePath}, Cmd: []string{"sh"}})
}

// newImage makes an OCI image of one layer for this host's platform.
func newImage(layer v1.Layer, cfg v1.Config) (v1.Image, error) {
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, MediaType: types.OCILayer})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config = cfg
	cf.History = nil
	return mutate.ConfigFile(img, cf)
}
