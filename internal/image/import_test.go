package image

import (
	"archive/tar"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// tarDir writes the tree at dir as a tar file.
func tarDir(t *testing.T, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, _ := d.Info()
		h, _ := tar.FileInfoHeader(fi, "")
		h.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestImport(t *testing.T) {
	a := image(t, layer(t, file("a", "a")))
	b := image(t, layer(t, file("b", "b")))
	lay := t.TempDir()
	p, err := layout.Write(lay, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(a, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name": "docker.io/library/alpha:1", "org.opencontainers.image.ref.name": "1"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(b); err != nil { // unnamed
		t.Fatal(err)
	}

	t.Run("layout-dir", func(t *testing.T) {
		s := newStore(t, Config{})
		imgs, err := s.Import(bg, lay, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(imgs) != 2 || imgs[0].Ref != "docker.io/library/alpha:1" || imgs[1].Ref != digestOf(t, b) {
			t.Fatalf("imported %+v", imgs)
		}
		// Now served from the cache, by name and by digest, without a registry.
		if got, err := s.Get(bg, "alpha:1", nil); err != nil || got.Digest != digestOf(t, a) {
			t.Fatalf("Get alpha:1: %v %v", got, err)
		}
		if got, err := s.Get(bg, digestOf(t, b), nil); err != nil || len(got.Layers) != 1 {
			t.Fatalf("Get by digest: %v %v", got, err)
		}
	})

	t.Run("oci-archive", func(t *testing.T) {
		arch := filepath.Join(t.TempDir(), "img.tar")
		tarDir(t, lay, arch)
		s := newStore(t, Config{})
		imgs, err := s.Import(bg, arch, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(imgs) != 2 || imgs[0].Digest != digestOf(t, a) {
			t.Fatalf("imported %+v", imgs)
		}
		if b, err := os.ReadFile(filepath.Join(imgs[0].Layers[0], "a")); err != nil || string(b) != "a" {
			t.Fatalf("content %q %v", b, err)
		}
		if ents, _ := os.ReadDir(s.path(dirTemp)); len(ents) != 0 {
			t.Fatalf("temp leftovers %v", ents)
		}
	})

	t.Run("docker-save", func(t *testing.T) {
		tagA, _ := name.NewTag("alpha:1")
		tagA2, _ := name.NewTag("registry.example/team/alpha:v1")
		tagB, _ := name.NewTag("beta:2")
		out := filepath.Join(t.TempDir(), "save.tar")
		if err := tarball.MultiRefWriteToFile(out, map[name.Reference]v1.Image{tagA: a, tagA2: a, tagB: b}); err != nil {
			t.Fatal(err)
		}
		s := newStore(t, Config{})
		imgs, err := s.Import(bg, out, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(imgs) != 2 {
			t.Fatalf("imported %+v", imgs)
		}
		list, _ := s.List(bg)
		refs := []string{}
		for _, i := range list {
			refs = append(refs, i.Ref)
		}
		want := []string{"docker.io/library/alpha:1", "docker.io/library/beta:2", "registry.example/team/alpha:v1"}
		if len(refs) != 3 || refs[0] != want[0] || refs[1] != want[1] || refs[2] != want[2] {
			t.Fatalf("listed %v, want %v", refs, want)
		}
		if got, err := s.Get(bg, "beta:2", nil); err != nil || got.Config.WorkingDir != "/work" {
			t.Fatalf("Get beta:2: %+v %v", got, err)
		}
	})

	t.Run("garbage", func(t *testing.T) {
		junk := filepath.Join(t.TempDir(), "junk.tar")
		os.WriteFile(junk, []byte("not a tar at all, not at all"), 0o600)
		_, err := newStore(t, Config{}).Import(bg, junk, nil)
		wantErr(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonImageInvalid, "junk.tar")
	})
}
