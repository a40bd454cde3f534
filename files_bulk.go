package sbx

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/sbx-run/sbx/internal/chunkpool"
	"github.com/sbx-run/sbx/internal/fdcopy"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// The bulk file endpoint of the server (see docs/API.md): one raw HTTP/1.1
// body per transfer, no protobuf framing, which the server and the agent
// hand to the kernel (splice, sendfile).
const (
	bulkPrefix = "/v1/sandboxes/"
	// bulkMinBytes is the smallest write sent over the bulk endpoint;
	// below it the WriteFile RPC costs no more.
	bulkMinBytes = 1 << 20
)

// errNoBulk says the server predates the bulk endpoint.
var errNoBulk = errors.New("the server has no bulk file endpoint")

// noBulk remembers the servers (by URL) without the bulk endpoint.
var noBulk sync.Map

// bulkHTTP is the bulk endpoint's client: HTTP/1.1 only, since the raw
// body then goes straight to a TCP connection (sendfile from a file).
var bulkHTTP = newBulkHTTP("")

// bulkUnix holds the bulk clients of Unix sockets, by path.
var bulkUnix sync.Map

// bulkClient returns the bulk client of the API's Unix socket at path, or
// of TCP for "".
func bulkClient(path string) *http.Client {
	if path == "" {
		return bulkHTTP
	}
	if c, ok := bulkUnix.Load(path); ok {
		return c.(*http.Client)
	}
	c, _ := bulkUnix.LoadOrStore(path, newBulkHTTP(path))
	return c.(*http.Client)
}

func newBulkHTTP(socket string) *http.Client {
	t := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialBulk(socket),
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		WriteBufferSize:     64 << 10,
		// How long a PUT waits for the server's 100 Continue before it
		// sends the body anyway.
		ExpectContinueTimeout: 5 * time.Second,
		ReadBufferSize:        64 << 10,
	}
	if socket != "" {
		t.Proxy = nil
	}
	return &http.Client{Transport: t}
}

// bulkDialer dials the bulk client's connections.
var bulkDialer = &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}

// dialBulk returns the dialer of connections whose ReadFrom sends request
// bodies in large writes (bulkConn): TCP ones, or to the Unix socket at
// socket when it is set.
func dialBulk(socket string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if socket != "" {
			network, addr = "unix", socket
		}
		c, err := bulkDialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if uc, ok := c.(*net.UnixConn); ok {
			// A Unix socket's send buffer is all a write has in flight
			// (208 KiB by default; loopback TCP grows to 4 MiB): a
			// larger one moves an upload in fewer steps (the kernel caps
			// it at net.core.wmem_max).
			uc.SetWriteBuffer(4 << 20)
		}
		switch c.(type) {
		case *net.TCPConn, *net.UnixConn:
			return &bulkConn{c}, nil
		}
		return c, nil
	}
}

// bulkConn is a bulk client's TCP or Unix connection. net/http writes a request
// body of known length through the connection's ReadFrom, with the body
// wrapped in an *io.LimitedReader, which hides what the caller gave:
// TCPConn's own ReadFrom then copies through io.Copy's 32 KiB buffer, one
// write(2) per 32 KiB, and a regular file does not get sendfile(2) (our
// bodyReader hides it too). ReadFrom here looks inside: a regular file
// goes with sendfile (fdcopy's on a Unix socket, which Go's own lacks),
// content that can write itself whole (a
// *bytes.Reader: WriteFile's data) goes in one write from its own memory,
// and anything else in writes of 1 MiB.
type bulkConn struct{ net.Conn }

func (c *bulkConn) ReadFrom(r io.Reader) (int64, error) {
	lr, limited := r.(*io.LimitedReader)
	if br, ok := r.(*bodyReader); ok || limited {
		if limited {
			br, ok = lr.R.(*bodyReader)
		}
		if ok {
			if n, handled, err := c.sendSource(br, lr); handled {
				return n, err
			}
		}
	}
	buf := chunkpool.Get(fileChunk)[:fileChunk]
	defer chunkpool.Put(buf)
	return io.CopyBuffer(struct{ io.Writer }{c.Conn}, r, buf)
}

// sendSource sends the content under a bodyReader (all of it, or lr.N
// bytes) without a copy through a buffer, when its type allows.
func (c *bulkConn) sendSource(br *bodyReader, lr *io.LimitedReader) (int64, bool, error) {
	want, known := knownSize(br.r)
	if !known || (lr != nil && lr.N != want) {
		return 0, false, nil
	}
	var n int64
	var err error
	switch src := br.r.(type) {
	case *os.File:
		// TCPConn.ReadFrom of a limited *os.File is sendfile(2).
		lf := &io.LimitedReader{R: src, N: want}
		switch nc := c.Conn.(type) {
		case *net.TCPConn:
			n, err = nc.ReadFrom(lf)
		case *net.UnixConn:
			var ok bool
			if n, ok, err = fdcopy.SendFile(nc, lf); !ok {
				return 0, false, nil
			}
		default:
			return 0, false, nil
		}
	case io.WriterTo:
		n, err = src.WriteTo(struct{ io.Writer }{c.Conn})
	default:
		return 0, false, nil
	}
	if lr != nil {
		lr.N -= n
	}
	return n, true, err
}

// bulkURL returns the endpoint's URL for path, or "" when the bulk path is
// not to be used: for https URLs (the client's own TLS settings, given
// with WithHTTPClient, are not at hand here) and for servers without it.
func (s *Sandbox) bulkURL(path string, mode fs.FileMode, withMode bool) string {
	if !strings.HasPrefix(s.c.url, "http://") {
		return ""
	}
	if _, no := noBulk.Load(s.c.bulkKey()); no {
		return ""
	}
	q := url.Values{"path": {path}}
	if withMode {
		q.Set("mode", strconv.FormatUint(uint64(sandbox.UnixMode(mode)), 8))
	}
	return strings.TrimSuffix(s.c.url, "/") + bulkPrefix + url.PathEscape(s.ID()) + "/file?" + q.Encode()
}

// bulkKey names the server in noBulk.
func (c *Client) bulkKey() string { return c.socket + " " + c.url }

// knownSize returns how many bytes r has left, when it can tell.
func knownSize(r io.Reader) (int64, bool) {
	switch v := r.(type) {
	case interface{ Len() int }:
		return int64(v.Len()), true
	case *os.File:
		fi, err := v.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return 0, false
		}
		off, err := v.Seek(0, io.SeekCurrent)
		if err != nil || off > fi.Size() {
			return 0, false
		}
		return fi.Size() - off, true
	}
	return 0, false
}

// doBulk sends req with the API key and maps an error answer.
func (s *Sandbox) doBulk(req *http.Request) (*http.Response, error) {
	req.Header.Set("Authorization", "Bearer "+s.c.apiKey)
	hc := bulkClient(s.c.socket)
	if s.c.bulk != nil && s.c.socket == "" {
		hc = s.c.bulk
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, s.c.fromWire(ctxErr)
		}
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			// This plain client cannot reach a server that the caller's
			// own HTTP client (WithHTTPClient) can: use the RPCs.
			noBulk.Store(s.c.bulkKey(), true)
			return nil, errNoBulk
		}
		return nil, s.c.fromWire(connect.NewError(connect.CodeUnavailable, err))
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	var body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	derr := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
	var code connect.Code
	if derr != nil || code.UnmarshalText([]byte(body.Code)) != nil {
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
			// Not our endpoint's answer: a server from before it.
			noBulk.Store(s.c.bulkKey(), true)
			return nil, errNoBulk
		}
		return nil, &Error{Kind: ErrInternal, Reason: "INTERNAL", Message: fmt.Sprintf("the server answered %s to a file transfer", resp.Status)}
	}
	ce := connect.NewError(code, errors.New(body.Message))
	for k, v := range resp.Header {
		ce.Meta()[k] = v
	}
	return nil, s.c.fromWire(ce)
}

// writeBulk PUTs size bytes of r to the bulk endpoint. For a server
// without it, it rewinds r (when r can) and returns errNoBulk.
func (s *Sandbox) writeBulk(ctx context.Context, path string, r io.Reader, size int64, perm fs.FileMode) (int64, error) {
	u := s.bulkURL(path, perm, true)
	if u == "" {
		return 0, errNoBulk
	}
	seeker, _ := r.(io.Seeker)
	var start int64
	if seeker != nil {
		start, _ = seeker.Seek(0, io.SeekCurrent)
	}
	// The body reader notes a failure of r, which must fail the write (the
	// transport then cuts the connection before the body is complete), and
	// when the transport is done with r, which may be after the answer.
	src := &bodyReader{r: r, closed: make(chan struct{})}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, src)
	if err != nil {
		return 0, &Error{Kind: ErrInvalidArgument, Reason: "INVALID_PATH", Message: err.Error(), Err: err}
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	// The server checks the request (auth, sandbox, path) before it takes
	// the body: a refused write sends none of it.
	req.Header.Set("Expect", "100-continue")
	resp, err := s.doBulk(req)
	<-src.closed // r is the caller's again
	if src.err != nil {
		return 0, &Error{Kind: ErrInvalidArgument, Reason: "SOURCE_READ_FAILED",
			Message: fmt.Sprintf("reading the content for %s failed (%v): the file in the sandbox was left unchanged", path, src.err), Err: src.err}
	}
	if errors.Is(err, errNoBulk) {
		if seeker == nil {
			return 0, &Error{Kind: ErrFailedPrecondition, Reason: "BULK_UNSUPPORTED",
				Message: fmt.Sprintf("write %s: the server at %s predates the bulk file endpoint and the content cannot be read again; upgrade the server or retry", path, s.c.URL())}
		}
		if _, serr := seeker.Seek(start, io.SeekStart); serr != nil {
			return 0, serr
		}
		return 0, errNoBulk
	}
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return size, nil
}

// bodyReader records the first error of the content's reader, and closes
// closed when the transport is done with it.
type bodyReader struct {
	r      io.Reader
	err    error
	once   sync.Once
	closed chan struct{}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

func (b *bodyReader) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// openBulk GETs the file from the bulk endpoint; errNoBulk for a server
// without it.
func (s *Sandbox) openBulk(ctx context.Context, path string) (io.ReadCloser, error) {
	u := s.bulkURL(path, 0, false)
	if u == "" {
		return nil, errNoBulk
	}
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		return nil, &Error{Kind: ErrInvalidArgument, Reason: "INVALID_PATH", Message: err.Error(), Err: err}
	}
	resp, err := s.doBulk(req)
	if err != nil {
		cancel()
		return nil, err
	}
	return &bulkReader{s: s, body: resp.Body, cancel: cancel}, nil
}

// bulkReader is a file's content from the bulk endpoint. A body cut short
// (the server or the agent failed midway) is an error, never a silently
// shorter file.
type bulkReader struct {
	s      *Sandbox
	body   io.ReadCloser
	cancel context.CancelFunc
}

func (r *bulkReader) mapErr(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return r.s.c.fromWire(connect.NewError(connect.CodeUnavailable, fmt.Errorf("the file transfer was cut: %w", err)))
}

func (r *bulkReader) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	return n, r.mapErr(err)
}

// WriteTo copies through one pooled 1 MiB buffer, so that io.Copy (and
// ReadFileTo) makes few large reads.
func (r *bulkReader) WriteTo(w io.Writer) (int64, error) {
	buf := chunkpool.Get(fileChunk)[:fileChunk]
	defer chunkpool.Put(buf)
	n, err := io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{r.body}, buf)
	return n, r.mapErr(err)
}

func (r *bulkReader) Close() error {
	r.cancel()
	return r.body.Close()
}
