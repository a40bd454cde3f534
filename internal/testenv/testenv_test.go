package testenv

import (
	"archive/tar"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/jackc/pgx/v5"
)

// layerFiles reads an image's only layer into name -> header.
func layerFiles(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("want one layer, got %d (%v)", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = h
	}
}

// extract unpacks an image's layers into dir: enough of an unpacker for
// these images (directories, files, symlinks, hard links), not a general one.
func extract(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, filepath.Clean("/"+h.Name))
			switch h.Typeflag {
			case tar.TypeDir:
				err = os.MkdirAll(p, os.FileMode(h.Mode).Perm())
			case tar.TypeReg:
				var f *os.File
				if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm()); err == nil {
					_, err = io.Copy(f, tr)
					f.Close()
				}
			case tar.TypeSymlink:
				err = os.Symlink(h.Linkname, p)
			case tar.TypeLink:
				err = os.Link(filepath.Join(dir, filepath.Clean("/"+h.Linkname)), p)
			}
			if err != nil {
				t.Fatalf("extract %s: %v", h.Name, err)
			}
		}
		rc.Close()
	}
}

func TestBusyboxImageContents(t *testing.T) {
	img := BusyboxImage(t)
	files := layerFiles(t, img)
	for _, want := range []string{"bin/busybox", "bin/sh", "bin/ls", "sbin/ifconfig", "usr/bin/env", "etc/passwd", "etc/group", "tmp", "root", "home"} {
		if files[want] == nil {
			t.Errorf("layer lacks %s", want)
		}
	}
	if h := files["bin/sh"]; h != nil && (h.Typeflag != tar.TypeSymlink || h.Linkname != "/bin/busybox") {
		t.Errorf("bin/sh = type %c -> %q, want a symlink to /bin/busybox", h.Typeflag, h.Linkname)
	}
	if h := files["tmp"]; h != nil && h.Mode&0o7777 != 0o1777 {
		t.Errorf("tmp mode = %o, want 1777", h.Mode)
	}
	if h := files["bin/busybox"]; h != nil && (h.Mode&0o111 == 0 || !h.ModTime.Equal(epoch)) {
		t.Errorf("bin/busybox mode %o mtime %v, want executable with mtime %v", h.Mode, h.ModTime, epoch)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cf.Config.Env, " "); got != ImagePath {
		t.Errorf("Env = %q, want %q", got, ImagePath)
	}
	if got := strings.Join(cf.Config.Cmd, " "); got != "sh" {
		t.Errorf("Cmd = %q, want sh", got)
	}
}

func TestBusyboxImageIsDeterministic(t *testing.T) {
	Require(t, false, BusyboxPath)
	a, err := buildBusybox()
	if err != nil {
		t.Fatal(err)
	}
	b, err := buildBusybox()
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("two builds differ: %s and %s", da, db)
	}
}

func TestBusyboxImageRunsInChroot(t *testing.T) {
	Require(t, true, "chroot")
	dir := t.TempDir()
	extract(t, BusyboxImage(t), dir)
	out, err := exec.Command("chroot", dir, "/bin/sh", "-c", "busybox echo hello from $(cat /etc/passwd | head -n1 | cut -d: -f1)").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hello from root" {
		t.Fatalf("chroot sh: %v: %q", err, out)
	}
}

func TestRegistryServesPushedImage(t *testing.T) {
	var requests atomic.Int64
	host := RegistryWith(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			h.ServeHTTP(w, r)
		})
	})
	if !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("registry host %q is not on 127.0.0.1", host)
	}
	ref := PushBusybox(t, host)
	if want := host + "/library/busybox:latest"; ref != want {
		t.Errorf("ref = %q, want %q", ref, want)
	}
	pulled := pull(t, ref)
	want, _ := BusyboxImage(t).Digest()
	if got, _ := pulled.Digest(); got != want {
		t.Errorf("pulled digest %s, pushed %s", got, want)
	}
	if requests.Load() == 0 {
		t.Error("the wrapping handler saw no requests")
	}
}

func pull(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	// Read every layer so that a broken blob fails here.
	if err := validateLayers(img); err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

func validateLayers(img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func TestServeRegistryStops(t *testing.T) {
	host, stop, err := ServeRegistry("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pull(t, PushBusybox(t, host))
	stop()
	if _, err := http.Get("http://" + host + "/v2/"); err == nil {
		t.Errorf("registry on %s still answers after stop", host)
	}
}

func TestExportOCILayoutAndSaveTarball(t *testing.T) {
	img := BusyboxImage(t)
	want, _ := img.Digest()

	dir := ExportOCILayout(t, filepath.Join(t.TempDir(), "layout"), "busybox:latest", img)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) != 1 || m.Manifests[0].Digest != want {
		t.Fatalf("layout index %+v (%v), want one manifest %s", m, err, want)
	}
	if got := m.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; got != "busybox:latest" {
		t.Errorf("ref.name annotation = %q", got)
	}

	path := SaveTarball(t, filepath.Join(t.TempDir(), "busybox.tar"), "busybox:latest", img)
	tag, _ := name.NewTag("busybox:latest")
	loaded, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateLayers(loaded); err != nil {
		t.Fatal(err)
	}
	// docker save keeps the config but not the manifest, so compare configs.
	wantConfig, _ := img.ConfigName()
	if got, _ := loaded.ConfigName(); got != wantConfig {
		t.Errorf("tarball image config %s, want %s", got, wantConfig)
	}
}

func TestMirrorFromSources(t *testing.T) {
	dir := t.TempDir()
	deb822 := filepath.Join(dir, "debian.sources")
	os.WriteFile(deb822, []byte("Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"+
		"Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n"), 0o644)
	if got := mirrorFromDeb822(deb822); got != "http://mirror.example/debian" {
		t.Errorf("deb822 mirror = %q", got)
	}
	list := filepath.Join(dir, "sources.list")
	os.WriteFile(list, []byte("deb [signed-by=/k.gpg arch=amd64] http://other.example/debian bookworm main\n"), 0o644)
	if got := mirrorFromList(list); got != "http://other.example/debian" {
		t.Errorf("list mirror = %q", got)
	}
}

// TestPythonImage builds the cached Python image the first time it runs on
// a machine (minutes; scripts/test.sh builds it before go test) and checks
// that python runs from it.
func TestPythonImage(t *testing.T) {
	img := PythonImage(t)
	files := layerFiles(t, img)
	for _, want := range []string{"usr/bin/python3", "usr/local/bin/python", "usr/local/bin/python3", "etc/debian_version", "bin", "tmp", "dev", "proc"} {
		if files[want] == nil {
			t.Errorf("layer lacks %s", want)
		}
	}
	for name := range files {
		if strings.HasPrefix(name, "proc/") || strings.HasPrefix(name, "dev/") {
			t.Errorf("layer carries host state %s", name)
		}
	}
	Require(t, true, "chroot")
	dir := t.TempDir()
	extract(t, img, dir)
	out, err := exec.Command("chroot", dir, "/usr/local/bin/python", "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "Python 3.") {
		t.Fatalf("python --version in the image: %v: %q", err, out)
	}
	out, err = exec.Command("chroot", dir, "python3", "-c", "import json, sqlite3; print(json.dumps([1]))").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "[1]" {
		t.Fatalf("python3 -c in the image: %v: %q", err, out)
	}
}

func TestPostgres(t *testing.T) {
	ctx := context.Background()
	a, b := Postgres(t), Postgres(t)
	if a == b {
		t.Fatalf("two tests got the same database %s", a)
	}
	c, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE TABLE x (id int primary key)"); err != nil {
		t.Fatal(err)
	}
	var host string
	if err := c.QueryRow(ctx, "SELECT inet_server_addr()::text").Scan(&host); err != nil || !strings.HasPrefix(host, "127.0.0.1") {
		t.Errorf("server address %q (%v), want 127.0.0.1", host, err)
	}
}
