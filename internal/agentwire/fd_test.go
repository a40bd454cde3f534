package agentwire

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
)

// openTo counts this process's descriptors that link to target (a path,
// or "pipe:[inode]").
func openTo(t *testing.T, target string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l == target {
			n++
		}
	}
	return n
}

// fdMethod answers with a descriptor of what open returns, or, where the
// connection cannot pass one, with a plain message and the bytes. It
// sends on done once it closed its file.
func fdMethod(open func() (*os.File, error), done chan<- struct{}) Method {
	return Method{MaxMessage: 1 << 10, Handle: func(ctx context.Context, c *ServerCall) error {
		f, err := open()
		if err != nil {
			return err
		}
		defer func() {
			f.Close()
			if done != nil {
				done <- struct{}{}
			}
		}()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		err = c.SendFD(&agentpb.ReadResponse{Size: fi.Size()}, f)
		if !errors.Is(err, ErrNoFD) {
			return err
		}
		if err := c.Send(&agentpb.ReadResponse{Size: -1}); err != nil {
			return err
		}
		return c.SendFile(f, fi.Size())
	}}
}

func TestFDPassing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("by descriptor"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 1)
	ts := startServer(t, map[string]Method{"read": fdMethod(func() (*os.File, error) { return os.Open(path) }, done), "stat": stat})
	c := ts.client()
	defer c.Close()
	for i := 0; i < 3; i++ {
		call, err := c.Open(ctxT(t), "read")
		if err != nil {
			t.Fatal(err)
		}
		if err := call.Send(&agentpb.ReadRequest{}); err != nil {
			t.Fatal(err)
		}
		var hdr agentpb.ReadResponse
		f, err := call.RecvFD(&hdr)
		if err != nil || f == nil {
			t.Fatalf("RecvFD: %v %v", f, err)
		}
		if err := call.Recv(nil); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
		call.Close()
		b, err := io.ReadAll(f)
		f.Close()
		<-done
		if n := openTo(t, path); n != 0 {
			t.Fatalf("%d descriptors of the file left open", n)
		}
		if err != nil || string(b) != "by descriptor" || hdr.GetSize() != int64(len(b)) {
			t.Fatalf("read %q (size %d): %v", b, hdr.GetSize(), err)
		}
	}
	// The connection serves plain calls after descriptors.
	var resp agentpb.StatResponse
	if err := c.Unary(ctxT(t), "stat", &agentpb.StatRequest{Path: "/x"}, &resp); err != nil {
		t.Fatal(err)
	}
	if n := ts.dials.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// TestFDNotRegular: a descriptor of anything but a regular file (here a
// pipe, which a compromised agent might send to make the host block) is
// refused and closed.
func TestFDNotRegular(t *testing.T) {
	var w *os.File
	done := make(chan struct{}, 1)
	ts := startServer(t, map[string]Method{"read": fdMethod(func() (*os.File, error) {
		r, pw, err := os.Pipe()
		w = pw
		return r, err
	}, done)})
	c := ts.client()
	defer c.Close()
	call, err := c.Open(ctxT(t), "read")
	if err != nil {
		t.Fatal(err)
	}
	call.Send(&agentpb.ReadRequest{})
	f, err := call.RecvFD(&agentpb.ReadResponse{})
	call.Close()
	if f != nil || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("RecvFD of a pipe: %v, %v; want an error", f, err)
	}
	<-done
	pipe, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(w.Fd())))
	if n := openTo(t, pipe); n != 1 {
		t.Fatalf("%d descriptors of the pipe open, want 1 (its write end)", n)
	}
	w.Close()
}

// TestFDOverTCP: where the connection cannot pass descriptors, SendFD says
// so (ErrNoFD, nothing sent) and the handler sends the bytes.
func TestFDOverTCP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("as bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(map[string]Method{"read": fdMethod(func() (*os.File, error) { return os.Open(path) }, nil)})
	ctx, cancel := context.WithCancel(context.Background())
	go srv.Serve(ctx, ln)
	t.Cleanup(func() { cancel(); ln.Close(); srv.Close() })
	c := NewClient(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}, 1<<20)
	defer c.Close()
	call, err := c.Open(ctxT(t), "read")
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	call.Send(&agentpb.ReadRequest{})
	var hdr agentpb.ReadResponse
	f, err := call.RecvFD(&hdr)
	if f != nil || err != nil || hdr.GetSize() != -1 {
		t.Fatalf("RecvFD over TCP: %v %v %v; want a plain message", f, err, hdr.GetSize())
	}
	_, r, err := call.RecvData()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(r); err != nil || string(b) != "as bytes" {
		t.Fatalf("data %q: %v", b, err)
	}
}

// TestFDLost: an FD frame whose descriptor did not come (a kernel that
// drops them) is ErrFDLost, and the call cannot be reused.
func TestFDLost(t *testing.T) {
	lost := Method{MaxMessage: 1 << 10, Handle: func(ctx context.Context, c *ServerCall) error {
		b, err := appendMsg(nil, &agentpb.ReadResponse{Size: 5})
		if err != nil {
			return err
		}
		b[0] = frameFD
		return c.c.write(b)
	}}
	ts := startServer(t, map[string]Method{"read": lost})
	c := ts.client()
	defer c.Close()
	call, err := c.Open(ctxT(t), "read")
	if err != nil {
		t.Fatal(err)
	}
	call.Send(&agentpb.ReadRequest{})
	f, err := call.RecvFD(&agentpb.ReadResponse{})
	if f != nil || !errors.Is(err, ErrFDLost) {
		t.Fatalf("RecvFD: %v %v, want ErrFDLost", f, err)
	}
	if !call.broken {
		t.Fatal("the call's connection is kept after a lost descriptor")
	}
	call.Close()
	if !c.FDs() {
		t.Fatal("FDs is false before NoFDs")
	}
	c.NoFDs()
	if c.FDs() {
		t.Fatal("FDs is true after NoFDs")
	}
}

// TestStrayFDDropped: a descriptor sent where none is expected (a plain
// Recv) is closed by the kernel, not leaked into the host.
func TestStrayFDDropped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 1)
	ts := startServer(t, map[string]Method{"read": fdMethod(func() (*os.File, error) { return os.Open(path) }, done)})
	c := ts.client()
	defer c.Close()
	call, err := c.Open(ctxT(t), "read")
	if err != nil {
		t.Fatal(err)
	}
	call.Send(&agentpb.ReadRequest{})
	if err := call.Recv(&agentpb.ReadResponse{}); err == nil {
		t.Fatal("Recv took an FD frame as a message")
	}
	call.Close()
	<-done
	if n := openTo(t, path); n != 0 {
		t.Fatalf("%d descriptors of the file left open", n)
	}
}
