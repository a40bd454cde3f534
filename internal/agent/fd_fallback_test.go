package agent

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/agentwire"
)

// serveMethods serves an agent's methods, less those named in drop, on a
// listener of network ("unix" or "tcp") and returns a client of it.
func serveMethods(t *testing.T, network string, drop ...string) *Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "a")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s, err := New(Config{StateDir: filepath.Join(dir, "s")})
	if err != nil {
		t.Fatal(err)
	}
	methods := s.methods()
	for _, m := range drop {
		delete(methods, m)
	}
	addr := filepath.Join(dir, "sock")
	if network == "tcp" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := agentwire.NewServer(methods)
	ctx, cancel := context.WithCancel(context.Background())
	go srv.Serve(ctx, ln)
	t.Cleanup(func() { cancel(); ln.Close(); srv.Close() })
	c := newClient(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, ln.Addr().String())
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes and reads back a file of 2 MiB through c and returns
// how many of the two went by descriptor.
func roundTrip(t *testing.T, c *Client) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "f")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "f")
	data := bytes.Repeat([]byte("0123456789abcdef"), 128<<10)
	before := fdTransfers.Load()
	if err := c.WriteFile(ctx, path, 0o644, Sized(bytes.NewReader(data), int64(len(data)))); err != nil {
		t.Fatal(err)
	}
	r, err := c.ReadFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	_, err = io.Copy(&got, r)
	r.Close()
	if err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read back %d bytes: %v", got.Len(), err)
	}
	return fdTransfers.Load() - before
}

// TestFDFallbackOldAgent: an agent without the descriptor methods (of an
// older sbx) gets Read and Write, and the client stops asking.
func TestFDFallbackOldAgent(t *testing.T) {
	c := serveMethods(t, "unix", methodReadFD, methodWriteFD)
	if n := roundTrip(t, c); n != 0 {
		t.Fatalf("%d transfers by descriptor with an agent that has no such method", n)
	}
	if c.wire.FDs() {
		t.Fatal("the client still asks an old agent for descriptors")
	}
	if n := roundTrip(t, c); n != 0 {
		t.Fatalf("%d transfers by descriptor on the second round", n)
	}
}

// TestFDFallbackTCP: over a connection that cannot pass descriptors (the
// pod network of the Kubernetes runtime), the same calls move the bytes.
func TestFDFallbackTCP(t *testing.T) {
	c := serveMethods(t, "tcp")
	if n := roundTrip(t, c); n != 0 {
		t.Fatalf("%d transfers by descriptor over TCP", n)
	}
}

// TestFDOverUnix: the same helper over a Unix socket takes the descriptor
// path both ways.
func TestFDOverUnix(t *testing.T) {
	c := serveMethods(t, "unix")
	if n := roundTrip(t, c); n != 2 {
		t.Fatalf("%d transfers by descriptor over a Unix socket, want 2", n)
	}
}
