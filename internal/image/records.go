package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// The subdirectories of Root; see the package comment.
const (
	dirLayers    = "l"
	dirRefs      = "i"
	dirManifests = "m"
	dirUsers     = "u"
	dirTemp      = "t"
)

// maxRecord bounds the JSON records we read back; they are ours, but a
// corrupt disk should give an error, not an allocation storm.
const maxRecord = 16 << 20

// refRecord is one entry of the tag index: a reference and the manifest it
// resolved to.
type refRecord struct {
	Ref    string    `json:"ref"`
	Digest string    `json:"digest"`
	Pulled time.Time `json:"pulled"`
}

// manifestRecord is what the store keeps about one image manifest.
type manifestRecord struct {
	Digest  string              `json:"digest"`
	Config  sandbox.ImageConfig `json:"config"`
	Created time.Time           `json:"created"`
	// DiffIDs are the layers' uncompressed digests, bottom first.
	DiffIDs []string `json:"diff_ids"`
	Size    int64    `json:"size"`
}

// layerRecord sits next to a layer dir: the full diffID (the dir name holds
// only a prefix) and the unpacked size.
type layerRecord struct {
	DiffID string `json:"diff_id"`
	Size   int64  `json:"size"`
}

func (s *Store) path(parts ...string) string {
	return filepath.Join(append([]string{s.cfg.Root}, parts...)...)
}

// usesPath is a path in the uses dir (Config.UsesDir).
func (s *Store) usesPath(parts ...string) string {
	if s.cfg.UsesDir == "" {
		return s.path(append([]string{dirUsers}, parts...)...)
	}
	return filepath.Join(append([]string{s.cfg.UsesDir}, parts...)...)
}

// refFile is the index file of a normalized reference.
func (s *Store) refFile(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return s.path(dirRefs, hex.EncodeToString(sum[:])+".json")
}

func (s *Store) manifestFile(digest string) string {
	return s.path(dirManifests, strings.TrimPrefix(digest, "sha256:")+".json")
}

// layerDir is the short dir of a layer: 16 hex digits of its diffID keep an
// overlay option string of 40 layers well under a page.
func (s *Store) layerDir(diffID string) string {
	return s.path(dirLayers, shortID(diffID))
}

func shortID(diffID string) string {
	h := strings.TrimPrefix(diffID, "sha256:")
	if len(h) > 16 {
		h = h[:16]
	}
	return h
}

// validDigest reports whether d is a sha256 digest string, the only kind we
// turn into file names.
func validDigest(d string) bool { return bareDigest.MatchString(d) }

// writeJSON writes v to path atomically: a temp file in the same dir, fsync,
// rename.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// readJSON reads a record; a missing file is fs.ErrNotExist.
func readJSON(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() > maxRecord {
		return sandbox.Internal("image store record %s is %d bytes, over %d: the cache is corrupt; remove it", path, fi.Size(), maxRecord)
	}
	return json.NewDecoder(f).Decode(v)
}

// image assembles the public Image of a manifest record, or reports false
// when any of its layers is missing from the cache.
func (s *Store) image(ref string, m *manifestRecord) (*Image, bool) {
	img := &Image{Ref: ref, Digest: m.Digest, Config: m.Config, Size: m.Size, Created: m.Created}
	// Callers own what they get; the record is shared.
	img.Config.Env = slices.Clone(m.Config.Env)
	img.Config.Entrypoint = slices.Clone(m.Config.Entrypoint)
	img.Config.Cmd = slices.Clone(m.Config.Cmd)
	img.Layers = make([]string, len(m.DiffIDs))
	for i, d := range m.DiffIDs {
		dir := s.layerDir(d)
		if _, err := os.Lstat(dir); err != nil {
			return nil, false
		}
		img.Layers[i] = dir
	}
	return img, true
}

// cached returns the image of a normalized ref if it is complete in the
// cache, with no network access. Records are memoized in memory (this
// process is the only writer); layer dirs are checked on disk every time.
func (s *Store) cached(ref string) (*Image, bool) {
	digest, ok := s.refDigest(ref)
	if !ok {
		return nil, false
	}
	m, ok := s.manifest(digest)
	if !ok {
		return nil, false
	}
	return s.image(ref, m)
}

// refDigest returns the manifest digest a ref points at.
func (s *Store) refDigest(ref string) (string, bool) {
	if validDigest(ref) {
		return ref, true // an unnamed imported image
	}
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		return ref[i+1:], validDigest(ref[i+1:])
	}
	s.memMu.RLock()
	d, ok := s.memRefs[ref]
	s.memMu.RUnlock()
	if ok {
		return d, true
	}
	var rr refRecord
	if err := readJSON(s.refFile(ref), &rr); err != nil || !validDigest(rr.Digest) {
		return "", false
	}
	s.memMu.Lock()
	s.memRefs[ref] = rr.Digest
	s.memMu.Unlock()
	return rr.Digest, true
}

// manifest returns the record of a manifest digest.
func (s *Store) manifest(digest string) (*manifestRecord, bool) {
	s.memMu.RLock()
	m, ok := s.memManifests[digest]
	s.memMu.RUnlock()
	if ok {
		return m, true
	}
	m = &manifestRecord{}
	if err := readJSON(s.manifestFile(digest), m); err != nil {
		return nil, false
	}
	s.memMu.Lock()
	s.memManifests[digest] = m
	s.memMu.Unlock()
	return m, true
}

// forget drops the memoized records (after Remove and GC).
func (s *Store) forget() {
	s.memMu.Lock()
	s.memRefs = map[string]string{}
	s.memManifests = map[string]*manifestRecord{}
	s.memMu.Unlock()
}

// layerCached reports whether the layer with this diffID is unpacked in the
// cache, and its size.
func (s *Store) layerCached(diffID v1.Hash) (int64, bool) {
	var lr layerRecord
	if err := readJSON(s.layerDir(diffID.String())+".json", &lr); err != nil || lr.DiffID != diffID.String() {
		return 0, false
	}
	if fi, err := os.Lstat(s.layerDir(diffID.String())); err != nil || !fi.IsDir() {
		return 0, false
	}
	return lr.Size, true
}

// refs reads the whole tag index.
func (s *Store) refs() ([]refRecord, error) {
	ents, err := os.ReadDir(s.path(dirRefs))
	if err != nil {
		return nil, err
	}
	var out []refRecord
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		var rr refRecord
		if err := readJSON(filepath.Join(s.path(dirRefs), e.Name()), &rr); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
			return nil, err
		}
		out = append(out, rr)
	}
	return out, nil
}

// moveUses moves the uses recorded in <Root>/u (by an earlier server,
// before Config.UsesDir) into the uses dir, and removes <Root>/u.
func (s *Store) moveUses() error {
	old := s.path(dirUsers)
	if filepath.Clean(old) == filepath.Clean(s.usesPath()) {
		return nil
	}
	dirs, err := os.ReadDir(old)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, d := range dirs {
		holders, err := os.ReadDir(filepath.Join(old, d.Name()))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(s.usesPath(d.Name()), 0o700); err != nil {
			return err
		}
		for _, h := range holders {
			if err := os.WriteFile(s.usesPath(d.Name(), h.Name()), nil, 0o600); err != nil {
				return err
			}
			if err := os.Remove(filepath.Join(old, d.Name(), h.Name())); err != nil {
				return err
			}
		}
		if err := os.Remove(filepath.Join(old, d.Name())); err != nil {
			return err
		}
	}
	return os.Remove(old)
}
