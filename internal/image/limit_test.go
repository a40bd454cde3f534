package image

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// TestMaxImageBytes checks the image size bound: an image whose layers are
// too large compressed is refused before any blob is fetched, one whose
// layer decompresses past the bound stops there and leaves nothing cached,
// and one within the bound is stored.
func TestMaxImageBytes(t *testing.T) {
	reg := newRegistry(t)
	noise := make([]byte, 1<<20)
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	// 2 MiB that gzip cannot shrink.
	push(t, reg.host+"/lim/big:1", image(t, layer(t, file("noise", hex.EncodeToString(noise)))))
	// A few KiB compressed, 8 MiB unpacked.
	push(t, reg.host+"/lim/bomb:1", image(t, layer(t, file("zeros", strings.Repeat("\x00", 8<<20)))))
	push(t, reg.host+"/lim/small:1", image(t, layer(t, file("a", "hello"))))

	root := t.TempDir()
	s := newStore(t, Config{Root: root, MaxImageBytes: 1 << 20})

	_, err := s.Get(bg, reg.host+"/lim/big:1", nil)
	wantErr(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonImageTooLarge, "compressed")
	if _, blobs := reg.requests(); len(blobs) != 0 {
		t.Errorf("blobs were fetched for an image refused by its manifest: %v", blobs)
	}

	_, err = s.Get(bg, reg.host+"/lim/bomb:1", nil)
	wantErr(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonImageTooLarge, "unpacks to more")
	for _, d := range []string{dirLayers, dirTemp} {
		if ents, _ := os.ReadDir(filepath.Join(root, d)); len(ents) != 0 {
			t.Errorf("%s holds %d entries after a refused image", d, len(ents))
		}
	}

	if _, err := s.Get(bg, reg.host+"/lim/small:1", nil); err != nil {
		t.Fatalf("an image within the bound: %v", err)
	}
}

// TestBlobLongerThanDeclared checks that a blob is read no further than its
// declared size: a registry that sends without end is cut off.
func TestBlobLongerThanDeclared(t *testing.T) {
	cr := &countingReader{r: neverEnding{}, ctx: bg, max: 1 << 20, emit: func(int64) {}}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, cr)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errBlobTooLong) || cr.n > 1<<20+64<<10 {
			t.Fatalf("read %d bytes, err %v; want errBlobTooLong just past 1 MiB", cr.n, err)
		}
	case <-time.After(time.Minute):
		t.Fatal("an endless blob was read for a minute")
	}
}

type neverEnding struct{}

func (neverEnding) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// rawManifest is a manifest pushed as the bytes given.
type rawManifest struct{ b []byte }

func (m rawManifest) RawManifest() ([]byte, error)        { return m.b, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// TestLayerOfUnknownSize checks that a manifest that gives a layer no size
// (or a negative one), which would leave its download unbounded, is refused
// before any blob is fetched.
func TestLayerOfUnknownSize(t *testing.T) {
	reg := newRegistry(t)
	img := image(t, layer(t, file("a", "hello")))
	push(t, reg.host+"/lim/ok:1", img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	put := func(tag string) {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(reg.host + "/lim/nosize:" + tag)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Put(ref, rawManifest{b}); err != nil {
			t.Fatal(err)
		}
	}
	m.Layers[0].Size = -1
	put("layer")
	m.Layers[0].Size, m.Config.Size = 10, -1
	put("config")
	sum := func(m map[string]int) (n int) {
		for _, v := range m {
			n += v
		}
		return n
	}
	_, before := reg.requests()
	s := newStore(t, Config{})
	_, err = s.Get(bg, reg.host+"/lim/nosize:layer", nil)
	wantErr(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonImageInvalid, "layer 0 a size of -1")
	_, err = s.Get(bg, reg.host+"/lim/nosize:config", nil)
	wantErr(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonImageInvalid, "its config a size of -1")
	if _, after := reg.requests(); sum(after) != sum(before) {
		t.Errorf("blobs fetched for a manifest refused by its sizes: %v", after)
	}
}
