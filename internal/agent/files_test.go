package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// patternReader yields n pseudo-random bytes without holding them.
func patternReader(seed uint64, n int64) io.Reader {
	var key [32]byte
	key[0] = byte(seed)
	return io.LimitReader(rand.NewChaCha8(key), n)
}

func tempDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "f")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestLargeFileRoundTrip(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	path := filepath.Join(tempDir(t), "sub", "big.bin")
	const size = 100 << 20
	want := sha256.New()
	if err := a.c.WriteFile(ctx, path, 0o600, io.TeeReader(patternReader(1, size), want)); err != nil {
		t.Fatal(err)
	}
	r, err := a.c.ReadFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, r)
	r.Close()
	if err != nil || n != size {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("the file read back differs from the one written")
	}
	fi, err := a.c.Stat(ctx, path)
	if err != nil || fi.Size != size || fi.Mode.Perm() != 0o600 || fi.IsDir || fi.Name != "big.bin" {
		t.Fatalf("stat: %+v %v", fi, err)
	}
}

// failingReader returns n bytes, then an error.
type failingReader struct {
	r io.Reader
}

var errBroken = errors.New("broken source")

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errBroken
	}
	return n, err
}

func TestAtomicWrite(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	dir := tempDir(t)
	path := filepath.Join(dir, "f.txt")
	if err := a.c.WriteFile(ctx, path, 0, strings.NewReader("old content")); err != nil {
		t.Fatal(err)
	}
	err := a.c.WriteFile(ctx, path, 0, &failingReader{patternReader(2, 3<<20)})
	if !errors.Is(err, errBroken) {
		t.Fatalf("write from a failing reader: %v", err)
	}
	// A write whose context is cancelled midway.
	cctx, cancel := context.WithCancel(ctx)
	r := io.MultiReader(patternReader(3, 1<<20), readerFunc(func([]byte) (int, error) { cancel(); return 0, io.EOF }), patternReader(4, 1<<20))
	if err := a.c.WriteFile(cctx, path, 0, r); err == nil {
		t.Fatal("a cancelled write succeeded")
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "old content" {
		t.Fatalf("content after failed writes: %q %v", b, err)
	}
	// The agent removes the temporary file when it sees the stream fail,
	// which may be just after the client has returned.
	for {
		entries, err := a.c.ListDir(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 1 && entries[0].Name == "f.txt" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("temporary files left behind: %+v", entries)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Fatalf("default mode %v", fi.Mode())
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestFileOps(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	dir := tempDir(t)
	if err := a.c.MkdirAll(ctx, dir+"/x/y/z", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := a.c.WriteFile(ctx, dir+"/x/b.txt", 0o640, strings.NewReader("b")); err != nil {
		t.Fatal(err)
	}
	if err := a.c.WriteFile(ctx, dir+"/x/a.txt", 0, strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.txt", dir+"/x/link"); err != nil {
		t.Fatal(err)
	}
	entries, err := a.c.ListDir(ctx, dir+"/x")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	if strings.Join(names, ",") != "a.txt,b.txt,link,y" || !entries[3].IsDir || entries[2].Target != "a.txt" || entries[2].Mode&os.ModeSymlink == 0 {
		t.Fatalf("list: %+v", entries)
	}
	r, err := a.c.ReadFile(ctx, dir+"/x/a.txt")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
		t.Fatalf("empty file: %q %v", b, err)
	}
	r.Close()
	if err := a.c.Rename(ctx, dir+"/x/b.txt", dir+"/x/y/c.txt"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dir + "/x/y/c.txt"); string(b) != "b" {
		t.Fatalf("renamed file: %q", b)
	}
	wantKind(t, a.c.Remove(ctx, dir+"/x", false), sandbox.ErrFailedPrecondition, "")
	if err := a.c.Remove(ctx, dir+"/x", true); err != nil {
		t.Fatal(err)
	}
	_, err = a.c.Stat(ctx, dir+"/x")
	wantKind(t, err, sandbox.ErrNotFound, sandbox.ReasonFileNotFound)
	wantKind(t, a.c.Remove(ctx, dir+"/x", true), sandbox.ErrNotFound, sandbox.ReasonFileNotFound)
	_, err = a.c.ReadFile(ctx, dir)
	wantKind(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonIsDirectory)
	_, err = a.c.ReadFile(ctx, dir+"/missing")
	wantKind(t, err, sandbox.ErrNotFound, sandbox.ReasonFileNotFound)
	_, err = a.c.ListDir(ctx, "/etc/passwd")
	wantKind(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonNotDirectory)
	wantKind(t, a.c.WriteFile(ctx, dir, 0, strings.NewReader("x")), sandbox.ErrFailedPrecondition, sandbox.ReasonIsDirectory)
}

func TestPathValidation(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	for _, p := range []string{"", "a\x00b", "/a\x00b", "/" + strings.Repeat("a", 5000)} {
		_, err := a.c.Stat(ctx, p)
		wantKind(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonInvalidPath)
		_, err = a.c.ReadFile(ctx, p)
		wantKind(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonInvalidPath)
		wantKind(t, a.c.WriteFile(ctx, p, 0, strings.NewReader("x")), sandbox.ErrInvalidArgument, sandbox.ReasonInvalidPath)
		wantKind(t, a.c.MkdirAll(ctx, p, 0), sandbox.ErrInvalidArgument, sandbox.ReasonInvalidPath)
		wantKind(t, a.c.Remove(ctx, p, true), sandbox.ErrInvalidArgument, sandbox.ReasonInvalidPath)
		wantKind(t, a.c.Rename(ctx, p, "/tmp/x"), sandbox.ErrInvalidArgument, sandbox.ReasonInvalidPath)
		_, err = a.c.ListDir(ctx, p)
		wantKind(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonInvalidPath)
	}
	wantKind(t, a.c.Remove(ctx, "/", true), sandbox.ErrInvalidArgument, sandbox.ReasonInvalidPath)
	wantKind(t, a.c.Remove(ctx, "/../", true), sandbox.ErrInvalidArgument, sandbox.ReasonInvalidPath)
}

func TestMaxFileBytes(t *testing.T) {
	a := startAgent(t, "--max-file-bytes", "1000000")
	ctx := ctxT(t)
	path := filepath.Join(tempDir(t), "f")
	err := a.c.WriteFile(ctx, path, 0, patternReader(5, 2<<20))
	wantKind(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonFileTooLarge)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a refused write left %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 0 {
		t.Fatalf("temporary files left: %v", entries)
	}
}
