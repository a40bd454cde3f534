package image

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Import bounds.
const (
	maxImportEntries = 1 << 16
	maxImportImages  = 1024
)

// Annotations that name an image in an OCI layout's index.
const (
	annotContainerdName = "io.containerd.image.name"
	annotRefName        = "org.opencontainers.image.ref.name"
)

// Import stores the images of an OCI layout dir, an OCI archive tar (an OCI
// layout in a tar, which is also what docker save writes since v25) or a
// legacy docker-save tar, for machines without registry access. Images are
// named by their annotations or RepoTags; an unnamed one gets its manifest
// digest as Ref.
func (s *Store) Import(ctx context.Context, p string, progress func(Progress)) ([]*Image, error) {
	if progress == nil {
		progress = func(Progress) {}
	}
	progress = serialize(progress)
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	fi, err := os.Stat(p)
	if err != nil {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "import %q: %w", p, err)
	}
	if fi.IsDir() {
		return s.importLayout(ctx, p, p, progress)
	}
	kind, err := tarKind(p)
	if err != nil {
		return nil, sandbox.InvalidArgument(sandbox.ReasonImageInvalid, "import %q: not a readable tar: %w", p, err)
	}
	switch kind {
	case "oci":
		dir, err := os.MkdirTemp(s.path(dirTemp), "import-")
		if err != nil {
			return nil, sandbox.Internal("import %q: %w", p, err)
		}
		defer os.RemoveAll(dir)
		if err := extractLayout(p, dir); err != nil {
			return nil, sandbox.InvalidArgument(sandbox.ReasonImageInvalid, "import %q: unpacking the OCI archive: %w", p, err)
		}
		return s.importLayout(ctx, p, dir, progress)
	case "docker":
		return s.importDockerSave(ctx, p, progress)
	}
	return nil, sandbox.InvalidArgument(sandbox.ReasonImageInvalid,
		"import %q: neither an OCI layout (no oci-layout file) nor a docker save tarball (no manifest.json)", p)
}

// tarKind tells an OCI archive ("oci") from a legacy docker-save tar
// ("docker") by the files at its top.
func tarKind(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var oci, docker bool
	for n := 0; n < maxImportEntries; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		switch path.Clean(h.Name) {
		case "oci-layout":
			oci = true
		case "manifest.json":
			docker = true
		}
	}
	switch {
	case oci:
		return "oci", nil
	case docker:
		return "docker", nil
	}
	return "", nil
}

// extractLayout unpacks the regular files and dirs of an OCI archive into
// dir, confined to it.
func extractLayout(p, dir string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(f)
	for n := 0; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n > maxImportEntries {
			return errors.New("too many entries for an OCI layout")
		}
		name, err := cleanName(h.Name)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o700); err != nil {
				return err
			}
		case tar.TypeReg, tar.TypeRegA:
			if d := path.Dir(name); d != "." {
				if err := root.MkdirAll(d, 0o700); err != nil {
					return err
				}
			}
			w, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(w, tr)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

// importLayout stores every image named in the index of the layout at dir.
func (s *Store) importLayout(ctx context.Context, src, dir string, progress func(Progress)) ([]*Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, sandbox.InvalidArgument(sandbox.ReasonImageInvalid, "import %q: not an OCI layout: %w", src, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, sandbox.InvalidArgument(sandbox.ReasonImageInvalid, "import %q: reading index.json: %w", src, err)
	}
	if len(im.Manifests) > maxImportImages {
		return nil, sandbox.InvalidArgument(sandbox.ReasonImageInvalid, "import %q: over %d images", src, maxImportImages)
	}
	var out []*Image
	for _, d := range im.Manifests {
		var img v1.Image
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err == nil {
				img, err = s.pickPlatform(src, "the layout", child, 0)
			}
			if err != nil {
				return out, importErr(src, err)
			}
		case d.MediaType.IsImage():
			if img, err = idx.Image(d.Digest); err != nil {
				return out, importErr(src, err)
			}
		default:
			continue
		}
		ref := layoutRefName(d.Annotations)
		if ref == "" {
			ref = d.Digest.String()
		}
		got, err := s.store(ctx, ref, img, false, progress)
		if err != nil {
			return out, err
		}
		progress(Progress{Ref: ref, Status: StatusDone})
		out = append(out, got)
	}
	return out, nil
}

// layoutRefName returns the normalized reference an index entry is
// annotated with, or "" when it names none we can use. A bare tag in
// org.opencontainers.image.ref.name (no repository) names nothing.
func layoutRefName(a map[string]string) string {
	for _, k := range []string{annotContainerdName, annotRefName} {
		n := a[k]
		if n == "" || !strings.ContainsAny(n, "/:@") {
			continue
		}
		if r, err := parseRef(n); err == nil {
			return normalize(r)
		}
	}
	return ""
}

// importDockerSave stores the images of a legacy docker-save tarball under
// each of their RepoTags.
func (s *Store) importDockerSave(ctx context.Context, p string, progress func(Progress)) ([]*Image, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(p) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, sandbox.InvalidArgument(sandbox.ReasonImageInvalid, "import %q: reading manifest.json: %w", p, err)
	}
	if len(m) > maxImportImages {
		return nil, sandbox.InvalidArgument(sandbox.ReasonImageInvalid, "import %q: over %d images", p, maxImportImages)
	}
	var out []*Image
	for _, d := range m {
		var tag *name.Tag
		var refs []string
		for _, rt := range d.RepoTags {
			t, err := name.NewTag(rt)
			if err != nil {
				return out, sandbox.InvalidArgument(sandbox.ReasonInvalidImageRef, "import %q: RepoTag %q: %w", p, rt, err)
			}
			if tag == nil {
				tag = &t
			}
			refs = append(refs, normalize(t))
		}
		if tag == nil && len(m) > 1 {
			return out, sandbox.InvalidArgument(sandbox.ReasonImageInvalid,
				"import %q: it holds %d images and one has no RepoTags, so it cannot be told apart", p, len(m))
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return out, importErr(p, err)
		}
		if len(refs) == 0 {
			dg, err := img.Digest()
			if err != nil {
				return out, importErr(p, err)
			}
			refs = []string{dg.String()}
		}
		got, err := s.store(ctx, refs[0], img, true, progress)
		if err != nil {
			return out, err
		}
		for _, r := range refs[1:] {
			if err := s.index(r, got.Digest); err != nil {
				return out, err
			}
		}
		progress(Progress{Ref: refs[0], Status: StatusDone})
		out = append(out, got)
	}
	return out, nil
}

func importErr(src string, err error) error {
	var se *sandbox.Error
	if errors.As(err, &se) {
		return err
	}
	return sandbox.InvalidArgument(sandbox.ReasonImageInvalid, "import %q: %w", src, err)
}
