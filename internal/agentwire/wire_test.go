package agentwire

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// testServer serves methods on a Unix socket; dials counts the client's
// connections.
type testServer struct {
	sock  string
	srv   *Server
	dials atomic.Int32
}

func startServer(t *testing.T, methods map[string]Method) *testServer {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{sock: sock, srv: NewServer(methods)}
	go ts.srv.Serve(ctx, ln)
	t.Cleanup(func() { cancel(); ln.Close(); ts.srv.Close() })
	return ts
}

func (ts *testServer) client() *Client {
	return NewClient(func(ctx context.Context) (net.Conn, error) {
		ts.dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "unix", ts.sock)
	}, 1<<20)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// stat is a unary method: it answers with the path as the name, or fails
// with NotFound for "/missing".
var stat = Method{MaxMessage: 1 << 10, Handle: func(ctx context.Context, c *ServerCall) error {
	var req agentpb.StatRequest
	if err := c.Request(&req); err != nil {
		return err
	}
	if req.GetPath() == "/missing" {
		return sandbox.NotFound(sandbox.ReasonFileNotFound, "stat %s: no such file", req.GetPath())
	}
	return c.Reply(&agentpb.StatResponse{Info: &agentpb.FileInfo{Name: req.GetPath()}})
}}

func TestUnaryAndReuse(t *testing.T) {
	ts := startServer(t, map[string]Method{"stat": stat})
	c := ts.client()
	defer c.Close()
	ctx := ctxT(t)
	for i := 0; i < 3; i++ {
		var res agentpb.StatResponse
		if err := c.Unary(ctx, "stat", &agentpb.StatRequest{Path: "/x"}, &res); err != nil || res.GetInfo().GetName() != "/x" {
			t.Fatalf("call %d: %v %v", i, &res, err)
		}
	}
	err := c.Unary(ctx, "stat", &agentpb.StatRequest{Path: "/missing"}, &agentpb.StatResponse{})
	var se *sandbox.Error
	if !errors.As(err, &se) || !errors.Is(err, sandbox.ErrNotFound) || se.Reason != sandbox.ReasonFileNotFound || !strings.Contains(se.Message, "no such file") {
		t.Fatalf("error: %#v", err)
	}
	// An error answer leaves the connection usable too.
	if err := c.Unary(ctx, "stat", &agentpb.StatRequest{Path: "/y"}, &agentpb.StatResponse{}); err != nil {
		t.Fatal(err)
	}
	if n := ts.dials.Load(); n != 1 {
		t.Fatalf("%d connections for 5 sequential calls, want 1", n)
	}
}

func TestUnknownMethod(t *testing.T) {
	ts := startServer(t, map[string]Method{"stat": stat})
	c := ts.client()
	defer c.Close()
	ctx := ctxT(t)
	err := c.Unary(ctx, "nope", &agentpb.StatRequest{}, &agentpb.StatResponse{})
	if !errors.Is(err, sandbox.ErrInvalidArgument) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown method: %v", err)
	}
	// The server closed that connection; the next call dials again.
	if err := c.Unary(ctx, "stat", &agentpb.StatRequest{Path: "/x"}, &agentpb.StatResponse{}); err != nil {
		t.Fatal(err)
	}
	if n := ts.dials.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// TestCancelReachesHandler: a client that goes away mid-call (its context
// ends) cancels the handler's context.
func TestCancelReachesHandler(t *testing.T) {
	canceled := make(chan struct{})
	started := make(chan struct{})
	wait := Method{MaxMessage: 1 << 10, Handle: func(ctx context.Context, c *ServerCall) error {
		if err := c.Send(&agentpb.StatResponse{}); err != nil {
			return err
		}
		close(started)
		<-ctx.Done()
		close(canceled)
		return ctx.Err()
	}}
	ts := startServer(t, map[string]Method{"wait": wait})
	c := ts.client()
	defer c.Close()
	ctx, cancel := context.WithCancel(ctxT(t))
	call, err := c.Open(ctx, "wait")
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	if err := call.Send(&agentpb.StatRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := call.Recv(&agentpb.StatResponse{}); err != nil {
		t.Fatal(err)
	}
	<-started
	cancel()
	if err := call.Recv(&agentpb.StatResponse{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv after cancel: %v", err)
	}
	call.Close()
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context did not end")
	}
}

// echoWrite is a client-streaming method: a header message, then Data
// frames it counts and hashes into its answer's size and name; with
// header path "/early" it answers before reading the data.
var echoWrite = Method{ClientStream: true, MaxMessage: 1 << 10, Handle: func(ctx context.Context, c *ServerCall) error {
	var hdr agentpb.StatRequest
	if err := c.Recv(&hdr); err != nil {
		return err
	}
	if hdr.GetPath() == "/early" {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "refused early")
	}
	var buf bytes.Buffer
	for {
		_, r, err := c.RecvData()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if _, err := io.Copy(&buf, r); err != nil {
			return err
		}
	}
	return c.Reply(&agentpb.StatResponse{Info: &agentpb.FileInfo{Size: int64(buf.Len()), Name: buf.String()[:min(buf.Len(), 16)]}})
}}

func TestClientStream(t *testing.T) {
	ts := startServer(t, map[string]Method{"write": echoWrite, "stat": stat})
	c := ts.client()
	defer c.Close()
	ctx := ctxT(t)
	write := func(path string, data []byte) (*agentpb.StatResponse, error) {
		call, err := c.Open(ctx, "write")
		if err != nil {
			return nil, err
		}
		defer call.Close()
		if err := call.Send(&agentpb.StatRequest{Path: path}); err != nil {
			return nil, err
		}
		serr := call.SendFrom(bytes.NewReader(data), int64(len(data)), make([]byte, 4096))
		if serr == nil {
			serr = call.SendData([]byte("tail"))
		}
		if serr == nil {
			serr = call.CloseSend()
		}
		var res agentpb.StatResponse
		if err := call.Answer(&res); err != nil {
			return nil, err
		}
		return &res, serr
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 100000)
	res, err := write("/f", data)
	if err != nil || res.GetInfo().GetSize() != int64(len(data)+4) || res.GetInfo().GetName() != "0123456789abcdef" {
		t.Fatalf("write: %v %v", res, err)
	}
	// A handler that answers before the end of the request: the client gets
	// its answer, and the connection is not used again.
	_, err = write("/early", data)
	if !errors.Is(err, sandbox.ErrInvalidArgument) || !strings.Contains(err.Error(), "refused early") {
		t.Fatalf("early answer: %v", err)
	}
	if err := c.Unary(ctx, "stat", &agentpb.StatRequest{Path: "/x"}, &agentpb.StatResponse{}); err != nil {
		t.Fatalf("the call after an early answer: %v", err)
	}
	if n := ts.dials.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// TestSourceFailureCuts: a source that fails cuts the call: the handler
// sees the request end early, never its end.
func TestSourceFailureCuts(t *testing.T) {
	got := make(chan error, 1)
	m := echoWrite
	inner := m.Handle
	m.Handle = func(ctx context.Context, c *ServerCall) error {
		err := inner(ctx, c)
		got <- err
		return err
	}
	ts := startServer(t, map[string]Method{"write": m})
	c := ts.client()
	defer c.Close()
	call, err := c.Open(ctxT(t), "write")
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	if err := call.Send(&agentpb.StatRequest{Path: "/f"}); err != nil {
		t.Fatal(err)
	}
	err = call.SendFrom(io.MultiReader(strings.NewReader("abc"), iotestErr{}), 100, make([]byte, 8))
	var se *SourceError
	if !errors.As(err, &se) {
		t.Fatalf("SendFrom of a failing source: %v", err)
	}
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("the handler took a cut request for a whole one")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not see the cut")
	}
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("source broke") }

// TestSendFile: Data frames sent with sendfile(2) arrive whole, through Read
// and through WriteTo.
func TestSendFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	data := bytes.Repeat([]byte("xyz"), 1<<20)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	read := Method{MaxMessage: 1 << 10, Handle: func(ctx context.Context, c *ServerCall) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return c.SendFile(f, int64(len(data)))
	}}
	ts := startServer(t, map[string]Method{"read": read})
	c := ts.client()
	defer c.Close()
	for _, viaWriteTo := range []bool{false, true} {
		call, err := c.Open(ctxT(t), "read")
		if err != nil {
			t.Fatal(err)
		}
		if err := call.Send(&agentpb.StatRequest{}); err != nil {
			t.Fatal(err)
		}
		n, r, err := call.RecvData()
		if err != nil || n != int64(len(data)) {
			t.Fatalf("RecvData: %d %v", n, err)
		}
		var buf bytes.Buffer
		if viaWriteTo {
			_, err = r.(io.WriterTo).WriteTo(&buf)
		} else {
			_, err = io.Copy(&buf, struct{ io.Reader }{r})
		}
		if err != nil || !bytes.Equal(buf.Bytes(), data) {
			t.Fatalf("read %d bytes: %v", buf.Len(), err)
		}
		if _, _, err := call.RecvData(); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
		call.Close()
	}
	if n := ts.dials.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// TestBounds: a message over the method's bound is refused with the bound
// named, and a bad preface ends the connection, without reaching a handler.
func TestBounds(t *testing.T) {
	ts := startServer(t, map[string]Method{"stat": stat})
	c := ts.client()
	defer c.Close()
	for _, size := range []int{2000, 4 << 20} {
		err := c.Unary(ctxT(t), "stat", &agentpb.StatRequest{Path: "/" + strings.Repeat("a", size)}, &agentpb.StatResponse{})
		if !errors.Is(err, sandbox.ErrInvalidArgument) || !strings.Contains(err.Error(), "the limit is 1024") {
			t.Fatalf("a request of %d bytes: %v", size, err)
		}
	}
	nc, err := net.Dial("unix", ts.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := nc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a bad preface: read %d, %v; want the connection closed", n, err)
	}
}

// TestOldAgent: an agent of an older sbx (an HTTP server) is named as such.
func TestOldAgent(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.Read(make([]byte, 64))
		io.WriteString(nc, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
	}()
	c := NewClient(func(ctx context.Context) (net.Conn, error) { return net.Dial("unix", sock) }, 1<<20)
	defer c.Close()
	err = c.Unary(ctxT(t), "stat", &agentpb.StatRequest{}, &agentpb.StatResponse{})
	if !errors.Is(err, ErrOldAgent) {
		t.Fatalf("old agent: %v", err)
	}
}

func TestStatusRoundTrip(t *testing.T) {
	for _, err := range []error{
		context.Canceled,
		context.DeadlineExceeded,
		sandbox.FailedPrecondition(sandbox.ReasonProcessExited, "gone"),
		sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonQuotaExceeded, "full: %w", errors.New("cause")),
		errors.New("plain"),
	} {
		got := decodeStatus(encodeStatus(err))
		switch {
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			if got != err {
				t.Errorf("%v came back as %v", err, got)
			}
		default:
			if sandbox.KindOf(got) != sandbox.KindOf(err) || got.Error() != err.Error() {
				t.Errorf("%v came back as %v (%v)", err, got, sandbox.KindOf(got))
			}
			if r := sandbox.ReasonOf(err); r != "" && sandbox.ReasonOf(got) != r {
				t.Errorf("reason %q came back as %q", r, sandbox.ReasonOf(got))
			}
		}
	}
	if decodeStatus(nil) != nil || decodeStatus([]byte{5, 200}) == nil {
		t.Error("empty or malformed status")
	}
}

// TestShutdown: idle connections close at once, a call in flight may end
// (its answer arrives) and its connection closes then, and Shutdown
// returns as soon as none is left.
func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	slow := Method{MaxMessage: 1 << 10, Handle: func(ctx context.Context, c *ServerCall) error {
		started <- struct{}{}
		<-release
		return c.Reply(&agentpb.StatResponse{Info: &agentpb.FileInfo{Name: "done"}})
	}}
	ts := startServer(t, map[string]Method{"slow": slow, "stat": stat})
	idle, busy := ts.client(), ts.client()
	defer idle.Close()
	defer busy.Close()
	ctx := ctxT(t)
	if err := idle.Unary(ctx, "stat", &agentpb.StatRequest{Path: "/x"}, &agentpb.StatResponse{}); err != nil {
		t.Fatal(err)
	}
	answer := make(chan error, 1)
	go func() {
		var res agentpb.StatResponse
		err := busy.Unary(ctx, "slow", &agentpb.StatRequest{}, &res)
		if err == nil && res.GetInfo().GetName() != "done" {
			err = errors.New("no answer")
		}
		answer <- err
	}()
	<-started
	done := make(chan struct{})
	go func() { ts.srv.Shutdown(ctx); close(done) }()
	time.Sleep(20 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("Shutdown returned while a call was in flight")
	default:
	}
	close(release)
	if err := <-answer; err != nil {
		t.Fatalf("the call in flight: %v", err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return once the call ended")
	}
	// The idle client's connection was closed: its next call fails.
	if err := idle.Unary(ctx, "stat", &agentpb.StatRequest{Path: "/x"}, &agentpb.StatResponse{}); err == nil {
		t.Fatal("a call after Shutdown succeeded")
	}
}
