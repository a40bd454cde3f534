package testenv

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is the modification time of every entry in the images built here, so
// that building an image twice gives the same digests.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// layerMeta is what a cached layer file's sidecar JSON records, so that a
// cached layer becomes a v1.Layer without reading (let alone hashing) the
// whole file again.
type layerMeta struct {
	Digest string `json:"digest"`
	DiffID string `json:"diff_id"`
	Size   int64  `json:"size"`
}

// fileLayer is a gzip-compressed layer tarball on disk whose digests are
// already known.
type fileLayer struct {
	path string
	meta layerMeta
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return v1.NewHash(l.meta.Digest) }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return v1.NewHash(l.meta.DiffID) }
func (l *fileLayer) Size() (int64, error)                { return l.meta.Size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }

// openCachedLayer returns the layer stored at path with its sidecar path+".json".
func openCachedLayer(path string) (v1.Layer, error) {
	b, err := os.ReadFile(path + ".json")
	if err != nil {
		return nil, err
	}
	var m layerMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("cached layer metadata %s: %w", path+".json", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() != m.Size {
		return nil, fmt.Errorf("cached layer %s is %d bytes, its metadata says %d: delete %s and rebuild", path, fi.Size(), m.Size, filepath.Dir(path))
	}
	return partial.CompressedToLayer(&fileLayer{path: path, meta: m})
}

// layerWriter writes a gzip-compressed tar to a file while hashing both the
// compressed bytes (the digest) and the tar stream (the diff id).
type layerWriter struct {
	f          *os.File
	compressed *countingHash
	diff       *countingHash
	gz         *gzip.Writer
	tw         *tar.Writer
}

type countingHash struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

func (c *countingHash) hash() string { return "sha256:" + hex.EncodeToString(c.h.Sum(nil)) }

func newLayerWriter(path string) (*layerWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	lw := &layerWriter{f: f, compressed: &countingHash{h: sha256.New()}, diff: &countingHash{h: sha256.New()}}
	lw.gz, _ = gzip.NewWriterLevel(io.MultiWriter(f, lw.compressed), gzip.BestSpeed)
	lw.tw = tar.NewWriter(io.MultiWriter(lw.gz, lw.diff))
	return lw, nil
}

// Close finishes the layer, syncs it and writes its sidecar metadata.
func (lw *layerWriter) Close() error {
	if err := lw.tw.Close(); err != nil {
		return err
	}
	if err := lw.gz.Close(); err != nil {
		return err
	}
	if err := lw.f.Sync(); err != nil {
		return err
	}
	if err := lw.f.Close(); err != nil {
		return err
	}
	m := layerMeta{Digest: lw.compressed.hash(), DiffID: lw.diff.hash(), Size: lw.compressed.n}
	b, _ := json.Marshal(m)
	return os.WriteFile(lw.f.Name()+".json", b, 0o644)
}

// addTree writes every file under root into the tar, with paths relative to
// root, keeping modes, ownership, symlinks and hard links. The contents of
// skipContents (relative directories such as "proc") are left out but the
// directories themselves are kept, as in a container image.
func (lw *layerWriter) addTree(root string, skipContents map[string]bool) error {
	links := map[[2]uint64]string{}
	return filepath.Walk(root, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if dir, _, ok := strings.Cut(rel, "/"); ok && skipContents[dir] {
			return nil
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		hdr.Name = rel
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		hdr.Format = tar.FormatPAX
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if first, ok := links[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				return lw.tw.WriteHeader(hdr)
			}
			links[key] = rel
		}
		if err := lw.tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(lw.tw, f)
		return err
	})
}

// entry is one file of a layer built in memory.
type entry struct {
	hdr  tar.Header
	body []byte
}

// writeEntries writes entries sorted by name, each with the fixed epoch
// mtime and root ownership unless set.
func writeEntries(w io.Writer, entries []entry) error {
	sort.Slice(entries, func(i, j int) bool { return entries[i].hdr.Name < entries[j].hdr.Name })
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := e.hdr
		h.ModTime = epoch
		h.Format = tar.FormatPAX
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			return err
		}
		if _, err := tw.Write(e.body); err != nil {
			return err
		}
	}
	return tw.Close()
}

func dirEntry(name string, mode int64) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}}
}

func fileEntry(name string, mode int64, body []byte) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, body: body}
}

func symlinkEntry(name, target string) entry {
	return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}
