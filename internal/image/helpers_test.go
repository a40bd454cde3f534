package image

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// testRegistry is go-containerregistry's in-memory registry on 127.0.0.1,
// behind a handler that counts requests and can be told to misbehave.
type testRegistry struct {
	host string // 127.0.0.1:port
	srv  *httptest.Server

	mu    sync.Mutex
	count map[string]int // "GET /v2/..." -> n
	// wrap, when set, handles each request instead of the registry.
	wrap func(w http.ResponseWriter, r *http.Request, next http.Handler)
}

func newRegistry(t testing.TB) *testRegistry {
	t.Helper()
	tr := &testRegistry{count: map[string]int{}}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		tr.count[r.Method+" "+r.URL.Path]++
		wrap := tr.wrap
		tr.mu.Unlock()
		if wrap != nil {
			wrap(w, r, reg)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	return tr
}

func (tr *testRegistry) setWrap(f func(w http.ResponseWriter, r *http.Request, next http.Handler)) {
	tr.mu.Lock()
	tr.wrap = f
	tr.mu.Unlock()
}

// requests returns the number of requests so far, and of blob GETs by digest.
func (tr *testRegistry) requests() (total int, blobGets map[string]int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	blobGets = map[string]int{}
	for k, n := range tr.count {
		total += n
		if strings.HasPrefix(k, "GET ") && strings.Contains(k, "/blobs/") {
			blobGets[k[strings.LastIndex(k, "/")+1:]] += n
		}
	}
	return total, blobGets
}

// push writes img (or an index) under ref on the test registry.
func push(t testing.TB, ref string, img any) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	switch v := img.(type) {
	case v1.Image:
		err = remote.Write(r, v)
	case v1.ImageIndex:
		err = remote.WriteIndex(r, v)
	}
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// entry is one tar entry of a hand-built layer.
type entry struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
	xattrs           map[string]string
	major, minor     int64
}

func file(name, body string) entry {
	return entry{name: name, body: body, typ: tar.TypeReg, mode: 0o644}
}
func dir(name string) entry { return entry{name: name, typ: tar.TypeDir, mode: 0o755} }

// layerTar builds an uncompressed layer tar from entries.
func layerTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Linkname: e.link, Size: int64(len(e.body)), ModTime: mt, Devmajor: e.major, Devminor: e.minor, Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if len(e.xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range e.xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layer is a gzip-compressed layer of the given entries.
func layer(t testing.TB, entries ...entry) v1.Layer {
	t.Helper()
	b := layerTar(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// image makes a linux/<host arch> image of layers, bottom first.
func image(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()
	return imageFor(t, runtime.GOARCH, layers...)
}

func imageFor(t testing.TB, arch string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)}
	cf.Config.Env = []string{"PATH=/usr/bin:/bin", "ARCH=" + arch}
	cf.Config.Cmd = []string{"/bin/sh"}
	cf.Config.WorkingDir = "/work"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digestOf(t testing.TB, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func newStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.Root == "" {
		cfg.Root = t.TempDir()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The tests' registries run on 127.0.0.1, which the store's guard
	// refuses for hosts the config does not name (TestPrivateRegistry
	// tests the guard itself); the trust is widened to loopback here.
	trusted := trustedHosts(cfg)
	s.transport = guardedTransport(func(host string) bool {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		return host == "127.0.0.1" || trusted[hostKey(host)]
	})
	return s
}

// wantErr checks the kind and reason of err and that its message names want.
func wantErr(t testing.TB, err error, kind error, reason, mention string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v %s", kind, reason)
	}
	if sandbox.KindOf(err) != kind || sandbox.ReasonOf(err) != reason {
		t.Fatalf("got %v (kind %v, reason %q), want kind %v reason %s", err, sandbox.KindOf(err), sandbox.ReasonOf(err), kind, reason)
	}
	if !strings.Contains(err.Error(), mention) {
		t.Fatalf("error %q does not mention %q", err, mention)
	}
}

var bg = context.Background()
