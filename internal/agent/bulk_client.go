package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"connectrpc.com/connect"

	"github.com/sbx-run/sbx/internal/chunkcodec"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// SizedReader is content of a known size. Client.WriteFile sends it over
// the bulk path (bulk.go) as one raw HTTP/1.1 body; content of unknown size
// goes as Connect chunks.
type SizedReader struct {
	R io.Reader
	// N is the exact size: a source that ends before N bytes fails the
	// write (the old file stays), and bytes after N are not read.
	N    int64
	read int64
}

// Read reads from R, up to N bytes in all.
func (s *SizedReader) Read(p []byte) (int, error) {
	if s.read >= s.N {
		return 0, io.EOF
	}
	if int64(len(p)) > s.N-s.read {
		p = p[:s.N-s.read]
	}
	n, err := s.R.Read(p)
	s.read += int64(n)
	if err == io.EOF && s.read < s.N {
		err = fmt.Errorf("the content ended after %d of %d bytes", s.read, s.N)
	}
	return n, err
}

// Sized returns r as content of exactly n bytes.
func Sized(r io.Reader, n int64) *SizedReader { return &SizedReader{R: r, N: n} }

// aLongTimeAgo is a deadline that makes pending I/O fail at once.
var aLongTimeAgo = time.Unix(1, 0)

// dialBulk opens a connection of its own to the agent for one transfer:
// the raw body then owns it, and closing it is how either side says the
// transfer was cut.
func (c *Client) dialBulk(ctx context.Context, what string) (net.Conn, error) {
	conn, err := c.transport.DialContext(ctx, "unix", "sbx-agent")
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "%s: the sandbox agent cannot be reached; check that the sandbox is running: %w", what, err)
	}
	return conn, nil
}

// writeBulk sends src to the agent's bulk endpoint. The agent replaces the
// file only once all src.N bytes arrived; any failure here closes the
// connection before that, so the old file stays.
func (c *Client) writeBulk(ctx context.Context, path string, mode os.FileMode, src *SizedReader) error {
	what := "write " + path
	if src.N < 0 {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "%s: the size %d is negative", what, src.N)
	}
	conn, err := c.dialBulk(ctx, what)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	defer stop()
	// Expect: 100-continue has the agent check the request before any of
	// the body is sent: a refused write costs no transfer, and an agent
	// from before the bulk endpoint answers 404 with the content unread.
	q := url.Values{"path": {path}, "mode": {strconv.FormatUint(uint64(sandbox.UnixMode(mode)), 8)}}
	head := fmt.Sprintf("PUT %s?%s HTTP/1.1\r\nHost: sbx-agent\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", BulkPath, q.Encode(), src.N)
	br := bufio.NewReader(conn)
	_, werr := io.WriteString(conn, head)
	if werr == nil {
		resp, err := http.ReadResponse(br, nil)
		switch {
		case err != nil:
			werr = err
		case resp.StatusCode == http.StatusNotFound && resp.Header.Get(BulkCodeHeader) == "":
			resp.Body.Close()
			return errNoBulk
		case resp.StatusCode != http.StatusContinue:
			defer resp.Body.Close()
			return bulkResponseError(resp, what)
		}
	}
	var rerr error
	if werr == nil {
		rerr, werr = copyExactly(conn, src)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if rerr != nil {
		// Our side failed: the agent sees the connection end short and
		// drops its temporary file.
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "%s: reading the content failed, the old file is kept: %w", what, rerr)
	}
	// A failed send usually means the agent answered early with an error
	// and closed: read that answer either way.
	conn.(interface{ CloseWrite() error }).CloseWrite()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if werr == nil {
			werr = err
		}
		return sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "%s: the sandbox agent ended the transfer without an answer; check that the sandbox is running: %w", what, werr)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return bulkResponseError(resp, what)
	}
	if werr != nil {
		return sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "%s: %w", what, werr)
	}
	return nil
}

// copyExactly copies src.N bytes of src.R to conn through a pooled buffer
// and returns the source's error (including ending short) and the
// connection's error apart.
func copyExactly(conn net.Conn, src *SizedReader) (rerr, werr error) {
	if src.N == 0 {
		return nil, nil
	}
	size := int(min(src.N, defaultChunk))
	buf := chunkcodec.Get(size)[:size]
	defer chunkcodec.Put(buf)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return nil, werr
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}

// bulkResponseError converts an error answer of the bulk endpoint into a
// *sandbox.Error, as fromWire does for Connect errors.
func bulkResponseError(resp *http.Response, what string) error {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxBulkErrorBytes))
	var code connect.Code
	if err := code.UnmarshalText([]byte(resp.Header.Get(BulkCodeHeader))); err != nil {
		code = connect.CodeUnavailable // not our agent's answer
		msg = []byte(fmt.Sprintf("unexpected answer %s", resp.Status))
	}
	ce := connect.NewError(code, errors.New(string(msg)))
	if r := resp.Header.Get(reasonHeader); r != "" {
		ce.Meta().Set(reasonHeader, r)
	}
	return fromWire(ce, what)
}

// errNoBulk says the agent predates the bulk endpoint.
var errNoBulk = errors.New("the agent has no bulk endpoint")

// readBulk asks the agent's bulk endpoint for path. It returns errNoBulk
// for an agent without the endpoint (an older agent in a sandbox that
// outlived a server upgrade).
func (c *Client) readBulk(ctx context.Context, path string) (io.ReadCloser, error) {
	what := "read " + path
	conn, err := c.dialBulk(ctx, what)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (io.ReadCloser, error) {
		stop()
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	q := url.Values{"path": {path}}
	if _, err := fmt.Fprintf(conn, "GET %s?%s HTTP/1.1\r\nHost: sbx-agent\r\n\r\n", BulkPath, q.Encode()); err != nil {
		return fail(sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "%s: the sandbox agent cannot be reached: %w", what, err))
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fail(sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "%s: the sandbox agent did not answer: %w", what, err))
	}
	if resp.StatusCode == http.StatusNotFound && resp.Header.Get(BulkCodeHeader) == "" {
		return fail(errNoBulk)
	}
	if resp.StatusCode != http.StatusOK {
		err := bulkResponseError(resp, what)
		return fail(err)
	}
	r := &BulkReader{conn: conn, br: br, left: resp.ContentLength, stop: stop, what: what, ctx: ctx}
	if resp.ContentLength < 0 {
		r.body = resp.Body // chunked: not a regular file
	}
	return r, nil
}

// BulkReader is a file's content as the agent's bulk endpoint sends it.
// WriteTo passes the socket itself to a writer that can take it (an
// HTTP/1.1 response over TCP), which Go turns into splice(2).
type BulkReader struct {
	conn net.Conn
	br   *bufio.Reader
	body io.ReadCloser // set for content of unknown size
	left int64         // bytes still to come, when the size is known
	stop func() bool
	what string
	ctx  context.Context
	err  error
}

// Size returns the content's size, or -1 when it is not known up front.
func (r *BulkReader) Size() int64 {
	if r.body != nil {
		return -1
	}
	return r.left
}

// cut maps a transfer that ended early.
func (r *BulkReader) cut(err error) error {
	if r.ctx.Err() != nil {
		return r.ctx.Err()
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "%s: the transfer was cut with %d bytes to go: %w", r.what, r.left, err)
}

func (r *BulkReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.body != nil {
		n, err := r.body.Read(p)
		if err != nil && err != io.EOF {
			r.err = r.cut(err)
			return n, r.err
		}
		return n, err
	}
	if r.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	var n int
	var err error
	if r.br.Buffered() > 0 {
		n, err = r.br.Read(p)
	} else {
		n, err = r.conn.Read(p)
	}
	r.left -= int64(n)
	if err != nil && (r.left > 0 || err != io.EOF) {
		r.err = r.cut(err)
		return n, r.err
	}
	return n, nil
}

// WriteTo copies the rest of the content to w: what was buffered, then
// the socket, through w's ReadFrom when it has one.
func (r *BulkReader) WriteTo(w io.Writer) (int64, error) {
	if r.body != nil || r.err != nil {
		return io.CopyBuffer(onlyWriter{w}, onlyReader{r}, make([]byte, defaultChunk))
	}
	var total int64
	if b := r.br.Buffered(); b > 0 && r.left > 0 {
		head, _ := r.br.Peek(int(min(int64(b), r.left)))
		n, err := w.Write(head)
		r.br.Discard(n)
		total += int64(n)
		r.left -= int64(n)
		if err != nil {
			return total, err
		}
	}
	if r.left == 0 {
		return total, nil
	}
	lr := &io.LimitedReader{R: r.conn, N: r.left}
	var n int64
	var err error
	if rf, ok := w.(io.ReaderFrom); ok && w != io.Discard {
		n, err = rf.ReadFrom(lr)
	} else {
		buf := chunkcodec.Get(defaultChunk)[:defaultChunk]
		n, err = io.CopyBuffer(onlyWriter{w}, lr, buf)
		chunkcodec.Put(buf)
	}
	total += n
	r.left = lr.N
	if err == nil && r.left > 0 {
		r.err = r.cut(nil)
		return total, r.err
	}
	return total, err
}

// Close ends the transfer.
func (r *BulkReader) Close() error {
	r.stop()
	return r.conn.Close()
}

type onlyWriter struct{ io.Writer }
type onlyReader struct{ io.Reader }
