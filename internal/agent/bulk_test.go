package agent_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestBulkRoundTrip(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	path := filepath.Join(tempDir(t), "sub", "big.bin")
	const size = 64<<20 + 12345
	want := sha256.New()
	if err := a.c.WriteFile(ctx, path, 0o640, agent.Sized(io.TeeReader(patternReader(7, size), want), size)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != size || fi.Mode().Perm() != 0o640 {
		t.Fatalf("stat: %v %v", fi, err)
	}
	r, err := a.c.ReadFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	fr, ok := r.(*agent.FileReader)
	if !ok || fr.Size() != size {
		t.Fatalf("ReadFile returned %T, want a *agent.FileReader of %d bytes", r, size)
	}
	got := sha256.New()
	n, err := io.Copy(got, r) // WriteTo
	r.Close()
	if err != nil || n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("read back %d bytes (%v); same content: %v", n, err, bytes.Equal(got.Sum(nil), want.Sum(nil)))
	}
	// Read (not WriteTo), in small pieces.
	r, err = a.c.ReadFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	got.Reset()
	n, err = io.CopyBuffer(got, struct{ io.Reader }{r}, make([]byte, 1000))
	r.Close()
	if err != nil || n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("Read back %d bytes (%v)", n, err)
	}

	// Empty files and files of unknown size (chunked).
	empty := filepath.Join(filepath.Dir(path), "empty")
	if err := a.c.WriteFile(ctx, empty, 0, agent.Sized(strings.NewReader(""), 0)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{empty, "/proc/self/status"} {
		r, err := a.c.ReadFile(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil || (p == empty) != (len(b) == 0) {
			t.Fatalf("read %s: %d bytes, %v", p, len(b), err)
		}
	}
}

func TestBulkErrors(t *testing.T) {
	a := startAgent(t, "--max-file-bytes", "1000000")
	ctx := ctxT(t)
	dir := tempDir(t)
	path := filepath.Join(dir, "f")

	err := a.c.WriteFile(ctx, path, 0, agent.Sized(patternReader(5, 2<<20), 2<<20))
	wantKind(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonFileTooLarge)
	err = a.c.WriteFile(ctx, "x/\x00", 0, agent.Sized(strings.NewReader("x"), 1))
	wantKind(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonInvalidPath)
	// A refused write of known size reads none of its content.
	untouched := &countingReader{r: patternReader(3, 900000)}
	err = a.c.WriteFile(ctx, dir, 0, agent.Sized(untouched, 900000))
	wantKind(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonIsDirectory)
	if untouched.n != 0 {
		t.Errorf("a refused write read %d bytes of its content", untouched.n)
	}
	_, err = a.c.ReadFile(ctx, filepath.Join(dir, "missing"))
	wantKind(t, err, sandbox.ErrNotFound, sandbox.ReasonFileNotFound)
	_, err = a.c.ReadFile(ctx, dir)
	wantKind(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonIsDirectory)

	// A source that fails, or ends short of its size, keeps the old file.
	if err := a.c.WriteFile(ctx, path, 0, agent.Sized(strings.NewReader("old"), 3)); err != nil {
		t.Fatal(err)
	}
	err = a.c.WriteFile(ctx, path, 0, agent.Sized(&failingReader{patternReader(2, 500000)}, 900000))
	if !errors.Is(err, errBroken) {
		t.Fatalf("write from a failing reader: %v", err)
	}
	err = a.c.WriteFile(ctx, path, 0, agent.Sized(strings.NewReader("short"), 900000))
	wantKind(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonInvalidSpec)
	wantOnly(t, dir, path, "old")
}

// TestBulkCutConnection sends half a file over a raw connection and
// closes it: the old file stays and no temporary file is left.
func TestBulkCutConnection(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	dir := tempDir(t)
	path := filepath.Join(dir, "f")
	if err := a.c.WriteFile(ctx, path, 0, agent.Sized(strings.NewReader("old"), 3)); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("unix", filepath.Join(a.stateDir, agent.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	size := int64(8 << 20)
	hdr, _ := (&agentpb.WriteRequest{Msg: &agentpb.WriteRequest_Header_{Header: &agentpb.WriteRequest_Header{Path: path, Size: &size}}}).MarshalAppend(nil)
	var req []byte
	req = append(req, "SBXAGENT/1\r\n"...)
	req = appendFrame(req, 'C', []byte("sbx.agent.v1.FilesystemService/Write"))
	req = appendFrame(req, 'M', hdr)
	req = binary.BigEndian.AppendUint32(append(req, 'D'), uint32(size))
	conn.Write(req)
	io.Copy(conn, patternReader(9, 4<<20))
	conn.Close()
	wantOnly(t, dir, path, "old")
}

// appendFrame appends a frame of the agent protocol (internal/agentwire).
func appendFrame(b []byte, kind byte, payload []byte) []byte {
	return append(binary.BigEndian.AppendUint32(append(b, kind), uint32(len(payload))), payload...)
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// wantOnly waits until dir holds only path, with content want: the agent
// removes a temporary file when it sees the transfer fail, which may be
// just after the client returned.
func wantOnly(t *testing.T, dir, path, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		entries, _ := os.ReadDir(dir)
		b, err := os.ReadFile(path)
		if len(entries) == 1 && err == nil && string(b) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dir %s holds %v, %s holds %q (%v); want only %q", dir, entries, path, b, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkWrite1MiB compares a 1 MiB write of known size (the bulk
// path's, in one Data frame) and one of unknown size (in chunks).
func BenchmarkWrite1MiB(b *testing.B) {
	a := startAgent(b)
	ctx := ctxT(b)
	path := filepath.Join(tempDir(b), "f")
	data := make([]byte, 1<<20)
	for _, bulk := range []bool{true, false} {
		b.Run(map[bool]string{true: "sized", false: "chunked"}[bulk], func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				var r io.Reader = bytes.NewReader(data)
				if bulk {
					r = agent.Sized(r, int64(len(data)))
				}
				if err := a.c.WriteFile(ctx, path, 0, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
