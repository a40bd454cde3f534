package image

import (
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// maxRefLen bounds a reference string; docker's own limit on a name is 255,
// plus a tag or a digest.
const maxRefLen = 512

// dockerHub is the registry host users write (and we normalize to); the
// go-containerregistry name package calls it index.docker.io.
const dockerHub = "docker.io"

var bareDigest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// parseRef parses ref the way docker does: "python:3.11" is
// docker.io/library/python:3.11, a missing tag is ":latest".
func parseRef(ref string) (name.Reference, error) {
	if ref == "" || len(ref) > maxRefLen {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidImageRef,
			"image reference %q is empty or longer than %d characters; write it like docker does, e.g. python:3.11", ref, maxRefLen)
	}
	r, err := name.ParseReference(ref, name.WithDefaultRegistry(name.DefaultRegistry))
	if err != nil {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidImageRef,
			"image reference %q is malformed (want [registry/]repository[:tag][@sha256:digest], e.g. python:3.11): %w", ref, err)
	}
	return r, nil
}

// registryHost returns the registry host of r as users write it
// ("docker.io", not "index.docker.io").
func registryHost(r name.Registry) string {
	h := r.RegistryStr()
	if h == name.DefaultRegistry {
		return dockerHub
	}
	return h
}

// normalize returns the canonical string of r: "docker.io/library/python:3.11"
// or "docker.io/library/python@sha256:...".
func normalize(r name.Reference) string {
	repo := registryHost(r.Context().Registry) + "/" + r.Context().RepositoryStr()
	if d, ok := r.(name.Digest); ok {
		return repo + "@" + d.DigestStr()
	}
	return repo + ":" + r.Identifier()
}

// hostKey maps the host forms of Docker Hub onto "docker.io", so config keys
// and references agree.
func hostKey(h string) string {
	// Docker's config.json keys Docker Hub as "https://index.docker.io/v1/".
	if _, rest, ok := strings.Cut(h, "://"); ok {
		h, _, _ = strings.Cut(rest, "/")
	}
	h = strings.ToLower(h)
	switch h {
	case name.DefaultRegistry, "registry-1.docker.io", "registry.hub.docker.com":
		return dockerHub
	}
	return h
}
