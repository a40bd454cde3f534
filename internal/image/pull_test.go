package image

import (
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestPullByTagAndDigest(t *testing.T) {
	reg := newRegistry(t)
	img := image(t, layer(t, dir("etc/"), file("etc/hello", "hi\n")), layer(t, file("etc/second", "2")))
	push(t, reg.host+"/test/hello:1.0", img)
	s := newStore(t, Config{})

	var events []Progress
	var mu sync.Mutex
	got, err := s.Get(bg, reg.host+"/test/hello:1.0", func(p Progress) { mu.Lock(); events = append(events, p); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	if got.Ref != reg.host+"/test/hello:1.0" || got.Digest != digestOf(t, img) {
		t.Fatalf("got ref %s digest %s", got.Ref, got.Digest)
	}
	if len(got.Layers) != 2 || got.Size != 4 || got.Config.WorkingDir != "/work" || !slices.Equal(got.Config.Cmd, []string{"/bin/sh"}) || got.Created.Year() != 2025 {
		t.Fatalf("got %+v", got)
	}
	if b, err := os.ReadFile(filepath.Join(got.Layers[0], "etc/hello")); err != nil || string(b) != "hi\n" {
		t.Fatalf("layer 0: %q %v", b, err)
	}
	if !filepath.IsAbs(got.Layers[1]) || filepath.Base(got.Layers[1]) == "" || len(filepath.Base(got.Layers[1])) != 16 {
		t.Fatalf("layer dir %q is not <root>/l/<16 hex>", got.Layers[1])
	}

	// Progress: resolving first, done last, each layer downloaded to its total.
	if events[0].Status != StatusResolving || events[len(events)-1].Status != StatusDone {
		t.Fatalf("events %+v", events)
	}
	finished := map[string]bool{}
	for _, e := range events {
		if e.Status == StatusDownloading && e.Done == e.Total && e.Total > 0 {
			finished[e.Layer] = true
		}
	}
	if len(finished) != 2 {
		t.Fatalf("want 2 layers downloaded to their total, events %+v", events)
	}

	byDigest, err := s.Get(bg, reg.host+"/test/hello@"+got.Digest, nil)
	if err != nil {
		t.Fatal(err)
	}
	if byDigest.Digest != got.Digest || byDigest.Ref != reg.host+"/test/hello@"+got.Digest || !slices.Equal(byDigest.Layers, got.Layers) {
		t.Fatalf("by digest: %+v", byDigest)
	}
	// A digest not in the cache is pulled by digest.
	img2 := image(t, layer(t, file("x", "y")))
	push(t, reg.host+"/test/other:1", img2)
	if got, err := s.Get(bg, reg.host+"/test/other@"+digestOf(t, img2), nil); err != nil || got.Digest != digestOf(t, img2) {
		t.Fatalf("pull by digest: %v %v", got, err)
	}
}

func TestDockerHubNames(t *testing.T) {
	for in, want := range map[string]string{
		"python:3.11":                        "docker.io/library/python:3.11",
		"python":                             "docker.io/library/python:latest",
		"docker.io/library/python:3.11":      "docker.io/library/python:3.11",
		"index.docker.io/foo/bar":            "docker.io/foo/bar:latest",
		"ghcr.io/o/r:v1":                     "ghcr.io/o/r:v1",
		"localhost:5000/a/b/c:t":             "localhost:5000/a/b/c:t",
		"busybox:1@sha256:" + sixtyFour('a'): "docker.io/library/busybox@sha256:" + sixtyFour('a'),
	} {
		r, err := parseRef(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := normalize(r); got != want {
			t.Errorf("normalize(%s) = %s, want %s", in, got, want)
		}
	}
}

func sixtyFour(c byte) string { return string(slices.Repeat([]byte{c}, 64)) }

func TestMultiPlatformIndex(t *testing.T) {
	reg := newRegistry(t)
	other := "s390x"
	if runtime.GOARCH == "s390x" {
		other = "ppc64le"
	}
	host := imageFor(t, runtime.GOARCH, layer(t, file("arch", runtime.GOARCH)))
	foreign := imageFor(t, other, layer(t, file("arch", other)))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: foreign, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}},
		mutate.IndexAddendum{Add: host, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	push(t, reg.host+"/multi/img:latest", idx)
	s := newStore(t, Config{})
	got, err := s.Get(bg, reg.host+"/multi/img", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digestOf(t, host) {
		t.Fatalf("picked %s, want the %s image %s", got.Digest, runtime.GOARCH, digestOf(t, host))
	}
	if b, _ := os.ReadFile(filepath.Join(got.Layers[0], "arch")); string(b) != runtime.GOARCH {
		t.Fatalf("arch file %q", b)
	}

	only := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: foreign, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}})
	push(t, reg.host+"/multi/foreign:latest", only)
	_, err = s.Get(bg, reg.host+"/multi/foreign", nil)
	wantErr(t, err, sandbox.ErrNotFound, sandbox.ReasonPlatformNotAvailable, "linux/"+other)

	// A single-platform image for another architecture is refused too.
	push(t, reg.host+"/multi/single:latest", foreign)
	_, err = s.Get(bg, reg.host+"/multi/single", nil)
	wantErr(t, err, sandbox.ErrNotFound, sandbox.ReasonPlatformNotAvailable, other)
}

func TestCacheHitPullsNothing(t *testing.T) {
	reg := newRegistry(t)
	push(t, reg.host+"/c/img:1", image(t, layer(t, file("a", "1")), layer(t, file("b", "2"))))
	root := t.TempDir()
	s := newStore(t, Config{Root: root})
	first, err := s.Get(bg, reg.host+"/c/img:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := reg.requests()
	if _, err := s.Get(bg, reg.host+"/c/img:1", nil); err != nil {
		t.Fatal(err)
	}
	// A new store on the same root (a restarted server) hits the cache too.
	again, err := newStore(t, Config{Root: root}).Get(bg, reg.host+"/c/img:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := reg.requests(); after != before {
		t.Fatalf("cached Get made %d requests", after-before)
	}
	if !slices.Equal(first.Layers, again.Layers) {
		t.Fatal("layers differ after restart")
	}
	// Pull goes to the registry, but downloads no blob it has.
	_, blobsBefore := reg.requests()
	if _, err := s.Pull(bg, reg.host+"/c/img:1", nil); err != nil {
		t.Fatal(err)
	}
	if after, blobs := reg.requests(); after == before || len(blobs) != len(blobsBefore) || sum(blobs) != sum(blobsBefore) {
		t.Fatalf("Pull: %d requests, blobs %v -> %v", after-before, blobsBefore, blobs)
	}
}

func sum(m map[string]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}

func TestConcurrentGetsDownloadOnce(t *testing.T) {
	reg := newRegistry(t)
	push(t, reg.host+"/c/img:1", image(t, layer(t, file("a", string(make([]byte, 3<<20)))), layer(t, file("b", "2"))))
	s := newStore(t, Config{})
	var wg sync.WaitGroup
	errs := make([]error, 10)
	imgs := make([]*Image, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			imgs[i], errs[i] = s.Get(bg, reg.host+"/c/img:1", nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(imgs[i].Layers, imgs[0].Layers) {
			t.Fatal("different layers")
		}
	}
	_, blobs := reg.requests()
	if len(blobs) != 3 { // config + 2 layers
		t.Fatalf("blob GETs %v", blobs)
	}
	for d, n := range blobs {
		if n != 1 {
			t.Fatalf("blob %s fetched %d times", d, n)
		}
	}
}

func TestSharedLayerStoredOnce(t *testing.T) {
	reg := newRegistry(t)
	base := layer(t, dir("usr/"), file("usr/base", "base"))
	a := image(t, base, layer(t, file("a", "a")))
	b := image(t, base, layer(t, file("b", "b")))
	push(t, reg.host+"/s/a:1", a)
	push(t, reg.host+"/s/b:1", b)
	s := newStore(t, Config{})
	ia, err := s.Get(bg, reg.host+"/s/a:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	baseDigest, _ := base.Digest()
	var events []Progress
	ib, err := s.Get(bg, reg.host+"/s/b:1", func(p Progress) { events = append(events, p) })
	if err != nil {
		t.Fatal(err)
	}
	if ia.Layers[0] != ib.Layers[0] || ia.Layers[1] == ib.Layers[1] {
		t.Fatalf("layers %v %v", ia.Layers, ib.Layers)
	}
	dirs, _ := filepath.Glob(filepath.Join(s.path(dirLayers), "*[0-9a-f]"))
	if len(dirs) != 3 {
		t.Fatalf("layer dirs %v", dirs)
	}
	_, blobs := reg.requests()
	if blobs[baseDigest.String()] != 1 {
		t.Fatalf("shared layer fetched %d times", blobs[baseDigest.String()])
	}
	if !slices.ContainsFunc(events, func(p Progress) bool { return p.Status == StatusCached && p.Layer == baseDigest.String() }) {
		t.Fatalf("no cached event for the shared layer: %+v", events)
	}
}

func TestRegistryErrors(t *testing.T) {
	reg := newRegistry(t)
	push(t, reg.host+"/e/img:1", image(t, layer(t, file("a", "1"))))
	s := newStore(t, Config{})

	_, err := s.Get(bg, reg.host+"/e/img:nope", nil)
	wantErr(t, err, sandbox.ErrNotFound, sandbox.ReasonImageNotFound, reg.host+"/e/img:nope")
	_, err = s.Get(bg, reg.host+"/e/missing:1", nil)
	wantErr(t, err, sandbox.ErrNotFound, sandbox.ReasonImageNotFound, "e/missing")
	for _, bad := range []string{"UPPER/Case:1", "a:b:c", "", "x@sha256:123", "python:" + string(make([]byte, 600))} {
		_, err = s.Get(bg, bad, nil)
		wantErr(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonInvalidImageRef, "image reference")
	}
	// A closed port on 127.0.0.1.
	closed := newRegistry(t)
	closed.srv.Close()
	_, err = s.Get(bg, closed.host+"/e/img:1", nil)
	wantErr(t, err, sandbox.ErrUnavailable, sandbox.ReasonRegistryUnavailable, closed.host)
	// Server errors.
	reg.setWrap(func(w http.ResponseWriter, r *http.Request, next http.Handler) { w.WriteHeader(http.StatusBadGateway) })
	_, err = s.Pull(bg, reg.host+"/e/img:1", nil)
	wantErr(t, err, sandbox.ErrUnavailable, sandbox.ReasonRegistryUnavailable, reg.host)
}
