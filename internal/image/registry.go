package image

import (
	"context"
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// endpoints returns the references to try for r, in order: r rewritten onto
// each configured mirror of its registry, then r itself. Plain HTTP is used
// for http:// mirrors and for hosts listed in Config.Insecure.
func (s *Store) endpoints(r name.Reference) ([]name.Reference, error) {
	repo := r.Context().RepositoryStr()
	var out []name.Reference
	for _, m := range s.cfg.Mirrors[hostKey(registryHost(r.Context().Registry))] {
		u, _ := url.Parse(m) // validated in New
		var opts []name.Option
		if u.Scheme == "http" || s.insecure[hostKey(u.Host)] {
			opts = append(opts, name.Insecure)
		}
		if !s.allowedHost(u.Host) {
			continue
		}
		mr, err := rebase(r, u.Host+"/"+repo, opts...)
		if err != nil {
			return nil, err
		}
		out = append(out, mr)
	}
	if s.insecure[hostKey(registryHost(r.Context().Registry))] {
		ir, err := rebase(r, r.Context().RegistryStr()+"/"+repo, name.Insecure)
		if err != nil {
			return nil, err
		}
		r = ir
	}
	if s.allowedHost(registryHost(r.Context().Registry)) {
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, sandbox.Errorf(sandbox.ErrPermissionDenied, sandbox.ReasonRegistryNotAllowed,
			"image %q: registry %s (and its mirrors) is not among the server's allowed registries %v: use an image from an allowed registry, or ask the operator to allow it",
			r.String(), registryHost(r.Context().Registry), s.cfg.AllowedRegistries)
	}
	return out, nil
}

// allowedHost reports whether the store may contact host.
func (s *Store) allowedHost(host string) bool {
	return s.allowed == nil || s.allowed[hostKey(host)]
}

// rebase returns r's tag or digest on another repository.
func rebase(r name.Reference, repo string, opts ...name.Option) (name.Reference, error) {
	nr, err := name.NewRepository(repo, opts...)
	if err != nil {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidImageRef, "image reference %q on %q: %w", r.String(), repo, err)
	}
	if d, ok := r.(name.Digest); ok {
		return nr.Digest(d.DigestStr()), nil
	}
	return nr.Tag(r.Identifier()), nil
}

// Resolve implements authn.Keychain from Config.Auth; registries without an
// entry are accessed anonymously.
func (s *Store) Resolve(res authn.Resource) (authn.Authenticator, error) {
	c, ok := s.cfg.Auth[hostKey(res.RegistryStr())]
	if !ok {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{Username: c.Username, Password: c.Password, RegistryToken: c.Token}), nil
}

func (s *Store) remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(s.transport),
		remote.WithAuthFromKeychain(s),
		remote.WithUserAgent("sbx"),
		// A registry that refuses connections will not accept one a few
		// seconds later either; fail fast and let the caller retry.
		remote.WithRetryBackoff(remote.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}),
	}
}

// fetch resolves ref on its endpoints (mirrors first) to one image for the
// store's platform. The error of the last endpoint tried is returned, except
// that a definite answer from the registry itself (not found, auth) wins
// over a mirror's failure.
func (s *Store) fetch(ctx context.Context, ref string, r name.Reference) (v1.Image, error) {
	eps, err := s.endpoints(r)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, ep := range eps {
		img, err := s.fetchFrom(ctx, ref, ep)
		if err == nil {
			return img, nil
		}
		if ctx.Err() != nil || sandbox.ReasonOf(err) == sandbox.ReasonPlatformNotAvailable {
			return nil, err
		}
		errs = append(errs, err)
	}
	last := errs[len(errs)-1]
	// A mirror's definite "no such image" beats the registry itself being
	// unreachable (the usual case offline, with the mirror as the only way
	// out): the user then learns that the name is wrong, not that the
	// network is, which retrying would never fix.
	if len(errs) > 1 && sandbox.ReasonOf(last) == sandbox.ReasonRegistryUnavailable {
		for _, e := range errs[:len(errs)-1] {
			if sandbox.ReasonOf(e) == sandbox.ReasonImageNotFound {
				return nil, sandbox.NotFound(sandbox.ReasonImageNotFound,
					"image %q not found on the mirrors of %s, and %s itself could not be reached (%v); check the name and tag: %w",
					ref, registryHost(r.Context().Registry), registryHost(r.Context().Registry), last, e)
			}
		}
	}
	return nil, last
}

func (s *Store) fetchFrom(ctx context.Context, ref string, ep name.Reference) (v1.Image, error) {
	desc, err := remote.Get(ep, s.remoteOptions(ctx)...)
	if err != nil {
		return nil, classify(ref, ep.Context().RegistryStr(), err)
	}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, classify(ref, ep.Context().RegistryStr(), err)
		}
		return s.pickPlatform(ref, ep.Context().RegistryStr(), idx, 0)
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return nil, classify(ref, ep.Context().RegistryStr(), err)
		}
		return img, nil
	}
	return nil, sandbox.NotFound(sandbox.ReasonImageNotFound,
		"image %q: %s serves media type %q, which is not an image", ref, ep.Context().RegistryStr(), desc.MediaType)
}

// maxIndexDepth bounds nested image indexes.
const maxIndexDepth = 2

// pickPlatform returns idx's image for the store's platform. An exact
// variant match wins; without a wanted variant the first os/arch match does.
func (s *Store) pickPlatform(ref, host string, idx v1.ImageIndex, depth int) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, classify(ref, host, err)
	}
	want := s.platform
	var best *v1.Descriptor
	var have []string
	for i := range im.Manifests {
		d := &im.Manifests[i]
		if d.Platform == nil {
			if d.MediaType.IsIndex() && depth < maxIndexDepth {
				child, err := idx.ImageIndex(d.Digest)
				if err != nil {
					return nil, classify(ref, host, err)
				}
				if img, err := s.pickPlatform(ref, host, child, depth+1); err == nil {
					return img, nil
				}
			}
			continue
		}
		p := d.Platform
		if p.OS == "unknown" { // attestation manifests
			continue
		}
		have = append(have, p.String())
		if p.OS != want.OS || p.Architecture != want.Architecture || !d.MediaType.IsImage() {
			continue
		}
		if normVariant(p.Architecture, p.Variant) == normVariant(want.Architecture, want.Variant) {
			best = d
			break
		}
		if best == nil && want.Variant == "" {
			best = d
		}
	}
	if best == nil {
		slices.Sort(have)
		return nil, sandbox.NotFound(sandbox.ReasonPlatformNotAvailable,
			"image %q has no variant for platform %s (it has: %s); pick an image built for this host",
			ref, want.String(), strings.Join(slices.Compact(have), ", "))
	}
	img, err := idx.Image(best.Digest)
	if err != nil {
		return nil, classify(ref, host, err)
	}
	return img, nil
}

// normVariant treats arm64 and arm64/v8 as the same platform, as docker does.
func normVariant(arch, variant string) string {
	if arch == "arm64" && variant == "" {
		return "v8"
	}
	return variant
}

// classify maps an error from a registry exchange onto the sbx error
// vocabulary, naming the reference and the registry.
func classify(ref, host string, err error) error {
	var se *sandbox.Error
	if errors.As(err, &se) {
		if se.Reason == sandbox.ReasonRegistryNotAllowed {
			// The transport's guard (dial.go) refused the address; its
			// message says why, without the URLs of every attempt.
			return sandbox.Errorf(sandbox.ErrPermissionDenied, sandbox.ReasonRegistryNotAllowed, "image %q: %s", ref, se.Message)
		}
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return sandbox.Errorf(sandbox.ErrDeadlineExceeded, sandbox.ReasonRegistryUnavailable,
			"pulling image %q from %s was cancelled or timed out: %w", ref, host, err)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		codes := map[transport.ErrorCode]bool{}
		for _, d := range te.Errors {
			codes[d.Code] = true
		}
		switch {
		case te.StatusCode == 401 || te.StatusCode == 403 || codes[transport.UnauthorizedErrorCode] || codes[transport.DeniedErrorCode]:
			return sandbox.Errorf(sandbox.ErrPermissionDenied, sandbox.ReasonRegistryAuth,
				"image %q: registry %s refused access; check the credentials configured for it (or that the repository exists and is public): %w", ref, host, err)
		case te.StatusCode == 404 || codes[transport.ManifestUnknownErrorCode] || codes[transport.NameUnknownErrorCode]:
			return sandbox.NotFound(sandbox.ReasonImageNotFound,
				"image %q not found on %s: no such repository, tag or digest; check the name and tag: %w", ref, host, err)
		case codes[transport.BlobUnknownErrorCode]:
			return sandbox.NotFound(sandbox.ReasonImageNotFound,
				"image %q on %s is incomplete (a blob is missing): %w", ref, host, err)
		}
		return sandbox.Unavailable(sandbox.ReasonRegistryUnavailable,
			"image %q: registry %s answered with an error; try again later: %w", ref, host, err)
	}
	if isNetErr(err) {
		return sandbox.Unavailable(sandbox.ReasonRegistryUnavailable,
			"image %q: registry %s cannot be reached; check the network, the registry address and the mirrors in the config: %w", ref, host, err)
	}
	return sandbox.Unavailable(sandbox.ReasonRegistryUnavailable,
		"image %q: exchange with registry %s failed: %w", ref, host, err)
}

func isNetErr(err error) bool {
	var ne net.Error
	var ue *url.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &ue) || errors.As(err, &oe)
}
