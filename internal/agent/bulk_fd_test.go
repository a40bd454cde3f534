package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/agentwire"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// TestFDRoundTrip: over the agent's Unix socket, a write of known size and
// a read of a regular file go by descriptor, with the same content, mode
// and errors as the byte path.
func TestFDRoundTrip(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	path := filepath.Join(tempDir(t), "sub", "f.bin")
	const size = 3<<20 + 7
	want := sha256.New()
	before := agent.FDTransfers()
	if err := a.c.WriteFile(ctx, path, 0o600, agent.Sized(io.TeeReader(patternReader(4, size), want), size)); err != nil {
		t.Fatal(err)
	}
	if n := agent.FDTransfers() - before; n != 1 {
		t.Fatalf("%d transfers by descriptor after a write, want 1", n)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != size || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stat: %v %v", fi, err)
	}
	for _, viaWriteTo := range []bool{true, false} {
		r, err := a.c.ReadFile(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if fr, ok := r.(*agent.FileReader); !ok || fr.Size() != size {
			t.Fatalf("ReadFile returned %T", r)
		}
		got := sha256.New()
		var n int64
		if viaWriteTo {
			n, err = io.Copy(got, r)
		} else {
			n, err = io.CopyBuffer(got, struct{ io.Reader }{r}, make([]byte, 4096))
		}
		r.Close()
		if err != nil || n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
			t.Fatalf("read back %d bytes: %v", n, err)
		}
	}
	if n := agent.FDTransfers() - before; n != 3 {
		t.Fatalf("%d transfers by descriptor, want 3", n)
	}
	// A file read by descriptor that shrinks meanwhile is an error, not a
	// short file.
	r, err := a.c.ReadFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 1000); err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, r)
	r.Close()
	wantKind(t, err, sandbox.ErrUnavailable, sandbox.ReasonAgentUnavailable)
	if !strings.Contains(err.Error(), "shrank") {
		t.Fatalf("error %q does not say the file shrank", err)
	}
}

// TestFDWrongSize: a host that wrote other than the size it announced into
// the passed file gets an error, and the old file stays.
func TestFDWrongSize(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	dir := tempDir(t)
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := agentwire.NewClient(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(a.stateDir, agent.SocketName))
	}, 1<<20)
	defer c.Close()
	for _, wrote := range []string{"shor", "too long"} {
		call, err := c.Open(ctx, "sbx.agent.v1.FilesystemService/WriteFD")
		if err != nil {
			t.Fatal(err)
		}
		size := int64(5)
		hdr := &agentpb.WriteRequest_Header{Path: path, Size: &size}
		if err := call.Send(&agentpb.WriteRequest{Msg: &agentpb.WriteRequest_Header_{Header: hdr}}); err != nil {
			t.Fatal(err)
		}
		f, err := call.RecvFD(&agentpb.WriteResponse{})
		if err != nil || f == nil {
			t.Fatalf("RecvFD: %v %v", f, err)
		}
		f.WriteString(wrote)
		f.Close()
		if err := call.CloseSend(); err != nil {
			t.Fatal(err)
		}
		err = call.Answer(&agentpb.WriteResponse{})
		call.Close()
		wantKind(t, err, sandbox.ErrInvalidArgument, sandbox.ReasonInvalidSpec)
		wantOnly(t, dir, path, "old")
	}
}

// TestFDReadCanceled: a read by descriptor stops when its call's context
// ends, as a read of Data frames does.
func TestFDReadCanceled(t *testing.T) {
	a := startAgent(t)
	path := filepath.Join(tempDir(t), "f")
	if err := os.WriteFile(path, bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	before := agent.FDTransfers()
	r, err := a.c.ReadFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if agent.FDTransfers() == before {
		t.Fatal("the read did not go by descriptor")
	}
	cancel()
	if n, err := io.Copy(io.Discard, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %d bytes, %v; want context.Canceled", n, err)
	}
}
