package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Store is the image store. It is safe for concurrent use by the goroutines
// of one process; only one process may use a Root at a time.
type Store struct {
	cfg      Config
	platform v1.Platform
	insecure map[string]bool
	// allowed is Config.AllowedRegistries as a set; nil allows every host.
	allowed map[string]bool
	// transport is the base HTTP transport; tests replace it to map a
	// made-up host name onto 127.0.0.1.
	transport http.RoundTripper

	refFlights   group[*Image]
	layerFlights group[int64]

	// gcMu: pulls and imports hold it shared, GC exclusively, so GC never
	// removes a temp dir or a fresh layer of a pull in progress.
	gcMu sync.RWMutex
	// mu serializes changes to the tag index and the users of images.
	mu sync.Mutex

	// memMu guards the memoized records (see cached).
	memMu        sync.RWMutex
	memRefs      map[string]string
	memManifests map[string]*manifestRecord
}

// New opens (creating if needed) the store under cfg.Root.
func New(cfg Config) (*Store, error) {
	if cfg.Root == "" {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "image store: Root is empty; set the data dir")
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "image store root %q: %w", cfg.Root, err)
	}
	cfg.Root = root
	s := &Store{cfg: cfg, insecure: map[string]bool{}}
	s.forget()
	trusted := trustedHosts(cfg)
	s.transport = guardedTransport(func(host string) bool { return trusted[hostKey(host)] })
	if cfg.Platform != nil {
		s.platform = *cfg.Platform
	} else {
		s.platform = v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	}
	mirrors := map[string][]string{}
	for host, list := range cfg.Mirrors {
		for _, m := range list {
			u, err := url.Parse(m)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
				(u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" {
				return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec,
					"image store: mirror %q of %q must be http://host[:port] or https://host[:port]", m, host)
			}
		}
		mirrors[hostKey(host)] = list
	}
	s.cfg.Mirrors = mirrors
	for _, h := range cfg.Insecure {
		s.insecure[hostKey(h)] = true
	}
	auth := map[string]Credentials{}
	for h, c := range cfg.Auth {
		auth[hostKey(h)] = c
	}
	s.cfg.Auth = auth
	if len(cfg.AllowedRegistries) > 0 {
		s.allowed = map[string]bool{}
		for _, h := range cfg.AllowedRegistries {
			s.allowed[hostKey(h)] = true
		}
	}

	// Only root may enter the store: unpacked layers keep their images'
	// setuid files, so a path other users could traverse would hand them
	// an image's setuid-root binaries. Stores made by older versions
	// (0711) are closed too.
	for _, d := range []string{root, s.path(dirLayers), s.path(dirRefs), s.path(dirManifests), s.usesPath(), s.path(dirTemp)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, sandbox.Internal("image store: creating %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, sandbox.Internal("image store: making %s private: %w", d, err)
		}
	}
	if err := s.moveUses(); err != nil {
		return nil, sandbox.Internal("image store: moving the recorded uses of %s into %s: %w", s.path(dirUsers), s.usesPath(), err)
	}
	return s, nil
}

// Get returns the image, from the cache if present (no network), else pulling it.
// A bare manifest digest ("sha256:...") looks up the cache only.
func (s *Store) Get(ctx context.Context, ref string, progress func(Progress)) (*Image, error) {
	if validDigest(ref) {
		if img, ok := s.cached(ref); ok {
			return img, nil
		}
		return nil, sandbox.NotFound(sandbox.ReasonImageNotFound, "image %s is not in the image store; pull or import it by name", ref)
	}
	r, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	norm := normalize(r)
	if img, ok := s.cached(norm); ok {
		if progress != nil {
			progress(Progress{Ref: norm, Status: StatusDone})
		}
		return img, nil
	}
	return s.pull(ctx, norm, progress)
}

// Pull always resolves ref against the registry (a moved tag is pulled again).
func (s *Store) Pull(ctx context.Context, ref string, progress func(Progress)) (*Image, error) {
	r, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	return s.pull(ctx, normalize(r), progress)
}

// pull resolves and stores norm once among concurrent callers.
func (s *Store) pull(ctx context.Context, norm string, progress func(Progress)) (*Image, error) {
	progress = serialize(progress)
	img, err := s.refFlights.do(ctx, norm, progress, func(ctx context.Context, emit func(Progress)) (img *Image, err error) {
		if s.cfg.OnPull != nil {
			start := time.Now()
			defer func() { s.cfg.OnPull(norm, time.Since(start), err) }()
		}
		s.gcMu.RLock()
		defer s.gcMu.RUnlock()
		r, err := parseRef(norm)
		if err != nil {
			return nil, err
		}
		emit(Progress{Ref: norm, Status: StatusResolving})
		rimg, err := s.fetch(ctx, norm, r)
		if err != nil {
			return nil, err
		}
		img, err = s.store(ctx, norm, rimg, false, emit)
		if err != nil {
			return nil, err
		}
		emit(Progress{Ref: norm, Status: StatusDone})
		return img, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, classify(norm, "the registry", err)
		}
		return nil, err
	}
	cp := *img
	cp.Layers = slices.Clone(img.Layers)
	return &cp, nil
}

// List returns every image in the tag index, sorted by reference.
func (s *Store) List(ctx context.Context) ([]*Image, error) {
	refs, err := s.refs()
	if err != nil {
		return nil, sandbox.Internal("image store: reading the index: %w", err)
	}
	var out []*Image
	for _, rr := range refs {
		if img, ok := s.cached(rr.Ref); ok {
			out = append(out, img)
		}
	}
	slices.SortFunc(out, func(a, b *Image) int { return strings.Compare(a.Ref, b.Ref) })
	return out, nil
}

// Remove removes ref (a reference, or a manifest digest for all references
// to it) from the store. Its layers stay until GC. It fails with
// FailedPrecondition IMAGE_IN_USE while a holder uses the image.
func (s *Store) Remove(ctx context.Context, ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.forget()
	refs, err := s.refs()
	if err != nil {
		return sandbox.Internal("image store: reading the index: %w", err)
	}
	var digest, norm string
	if validDigest(ref) {
		digest = ref
	} else {
		r, err := parseRef(ref)
		if err != nil {
			return err
		}
		norm = normalize(r)
		for _, rr := range refs {
			if rr.Ref == norm {
				digest = rr.Digest
			}
		}
	}
	if digest == "" {
		return sandbox.NotFound(sandbox.ReasonImageNotFound, "image %q is not in the image store", ref)
	}
	if holders := s.holders(digest); len(holders) > 0 {
		return sandbox.FailedPrecondition(sandbox.ReasonImageInUse,
			"image %q is used by %d sandbox(es) (%s); stop them first", ref, len(holders), strings.Join(holders[:min(len(holders), 5)], ", "))
	}
	left := 0
	found := false
	for _, rr := range refs {
		if rr.Digest != digest {
			continue
		}
		if norm == "" || rr.Ref == norm {
			found = true
			if err := os.Remove(s.refFile(rr.Ref)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return sandbox.Internal("image store: removing %q: %w", rr.Ref, err)
			}
			continue
		}
		left++
	}
	if !found && norm == "" {
		if _, err := os.Stat(s.manifestFile(digest)); err != nil {
			return sandbox.NotFound(sandbox.ReasonImageNotFound, "image %q is not in the image store", ref)
		}
	}
	if left == 0 {
		if err := os.Remove(s.manifestFile(digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return sandbox.Internal("image store: removing %s: %w", digest, err)
		}
	}
	return nil
}

var holderRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func (s *Store) checkUse(digest, holder string) error {
	if !validDigest(digest) {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "image digest %q is not sha256:<64 hex>", digest)
	}
	if !holderRE.MatchString(holder) {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "image user %q must be 1-128 of [A-Za-z0-9_.-]", holder)
	}
	return nil
}

// Use records that holder (a sandbox id) uses the image with this manifest
// digest, so that Remove refuses it. The record is a file, so it survives
// restarts of the server; Use is idempotent. It is not synced to disk: a
// use matters only while its sandbox lives, no sandbox outlives a crash of
// the host, and what the page cache holds survives the server's. The sync
// (a journal commit) was 1.5 to 3 ms of every cold create on the benchmark
// machine. Release does not sync either: a release lost to a host crash
// leaves the use of a sandbox that the crash ended, which the server's
// next start releases (ReleaseExcept).
func (s *Store) Use(digest, holder string) error {
	if err := s.checkUse(digest, holder); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := os.Stat(s.manifestFile(digest)); err != nil {
		return sandbox.NotFound(sandbox.ReasonImageNotFound, "image %s is not in the image store", digest)
	}
	dir := s.usesPath(strings.TrimPrefix(digest, "sha256:"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return sandbox.Internal("image store: recording use of %s: %w", digest, err)
	}
	if err := os.WriteFile(filepath.Join(dir, holder), nil, 0o600); err != nil {
		return sandbox.Internal("image store: recording use of %s: %w", digest, err)
	}
	return nil
}

// Release undoes Use; releasing what is not used is not an error.
func (s *Store) Release(digest, holder string) error {
	if err := s.checkUse(digest, holder); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := s.usesPath(strings.TrimPrefix(digest, "sha256:"))
	if err := os.Remove(filepath.Join(dir, holder)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return sandbox.Internal("image store: releasing %s: %w", digest, err)
	}
	os.Remove(dir) // only when empty
	return nil
}

// ReleaseExcept releases every use whose holder keep does not name, and
// returns how many it released. The server calls it once at start with
// the sandboxes its runtime found: after a reboot those are none, and the
// uses recorded before it (files on disk, where the runtime's own records
// are on a tmpfs that the reboot emptied) would pin their images forever.
func (s *Store) ReleaseExcept(keep func(holder string) bool) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dirs, err := os.ReadDir(s.usesPath())
	if err != nil {
		return 0, sandbox.Internal("image store: %w", err)
	}
	n := 0
	var errs []error
	for _, d := range dirs {
		dir := s.usesPath(d.Name())
		ents, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range ents {
			if keep(e.Name()) {
				continue
			}
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
				continue
			}
			n++
		}
		os.Remove(dir) // only when empty
	}
	if n > 0 {
		errs = append(errs, syncDir(s.usesPath()))
	}
	if err := errors.Join(errs...); err != nil {
		return n, sandbox.Internal("image store: releasing stale uses: %w", err)
	}
	return n, nil
}

// holders lists the users of a manifest digest.
func (s *Store) holders(digest string) []string {
	ents, _ := os.ReadDir(s.usesPath(strings.TrimPrefix(digest, "sha256:")))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return nil // gone: nothing to make durable
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return sandbox.Internal("image store: syncing %s: %w", dir, err)
	}
	return nil
}

// GC removes manifests that no reference names and no holder uses, layers
// that no remaining manifest references, and temp leftovers of interrupted
// pulls. It waits for pulls in progress to finish.
func (s *Store) GC(ctx context.Context) (removedLayers int, err error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.forget()

	refs, err := s.refs()
	if err != nil {
		return 0, sandbox.Internal("image store: reading the index: %w", err)
	}
	liveManifests := map[string]bool{}
	for _, rr := range refs {
		liveManifests[strings.TrimPrefix(rr.Digest, "sha256:")] = true
	}
	if ents, err := os.ReadDir(s.usesPath()); err == nil {
		for _, e := range ents {
			liveManifests[e.Name()] = true
		}
	}
	liveLayers := map[string]bool{}
	ents, err := os.ReadDir(s.path(dirManifests))
	if err != nil {
		return 0, sandbox.Internal("image store: %w", err)
	}
	for _, e := range ents {
		hex, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !liveManifests[hex] {
			os.Remove(s.path(dirManifests, e.Name()))
			continue
		}
		var m manifestRecord
		if err := readJSON(s.path(dirManifests, e.Name()), &m); err != nil {
			return 0, sandbox.Internal("image store: reading manifest record %s: %w", e.Name(), err)
		}
		for _, d := range m.DiffIDs {
			liveLayers[shortID(d)] = true
		}
	}

	ents, err = os.ReadDir(s.path(dirLayers))
	if err != nil {
		return 0, sandbox.Internal("image store: %w", err)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return removedLayers, sandbox.Errorf(sandbox.ErrDeadlineExceeded, sandbox.ReasonInternal, "image store GC interrupted: %w", err)
		}
		short := strings.TrimSuffix(e.Name(), ".json")
		if liveLayers[short] {
			continue
		}
		p := s.path(dirLayers, e.Name())
		if !e.IsDir() {
			os.Remove(p)
			continue
		}
		// Move out of l/ first, so that a crash mid-removal never leaves a
		// half-deleted layer where a pull would take it for a cached one.
		trash := s.path(dirTemp, fmt.Sprintf("gc-%s-%d", short, time.Now().UnixNano()))
		if err := os.Rename(p, trash); err != nil {
			return removedLayers, sandbox.Internal("image store: removing layer %s: %w", short, err)
		}
		removedLayers++
	}

	// No pull is in progress (we hold gcMu), so everything in t/ is a
	// leftover.
	ents, err = os.ReadDir(s.path(dirTemp))
	if err != nil {
		return removedLayers, sandbox.Internal("image store: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(s.path(dirTemp, e.Name())); err != nil {
			return removedLayers, sandbox.Internal("image store: removing %s: %w", e.Name(), err)
		}
	}
	return removedLayers, nil
}
