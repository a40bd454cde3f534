package agentwire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sbx-run/sbx/internal/protolite"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// preface opens every connection, from the client: it names the protocol,
// and an agent of an older sbx (which spoke HTTP) answers it at once with
// an HTTP error, which the client recognizes (ErrOldAgent).
const preface = "SBXAGENT/1\r\n"

// ErrUnreachable wraps the errors of a call whose connection failed: the
// agent could not be reached or went away mid-call.
var ErrUnreachable = errors.New("the sandbox agent cannot be reached")

// ErrOldAgent is the error of a call to an agent that speaks HTTP, the
// protocol of sbx before this one.
var ErrOldAgent = sandbox.FailedPrecondition(sandbox.ReasonAgentUnavailable,
	"the sandbox's agent is from an older sbx version, whose protocol this server no longer speaks; delete the sandbox and create it again")

// maxIdle is how many idle connections a Client keeps.
const maxIdle = 4

// Client makes calls to one agent, over connections it dials and keeps
// idle between calls.
type Client struct {
	dial       func(context.Context) (net.Conn, error)
	maxMessage int

	mu     sync.Mutex
	idle   []*conn
	first  net.Conn
	closed bool
	// noFD is set once the agent showed it cannot pass descriptors.
	noFD atomic.Bool
}

// FDs reports whether calls to this agent may ask for file descriptors
// (see fd.go): true until NoFDs.
func (cl *Client) FDs() bool { return !cl.noFD.Load() }

// NoFDs makes FDs false: the agent is too old for the methods that pass
// descriptors, or a descriptor did not arrive.
func (cl *Client) NoFDs() { cl.noFD.Store(true) }

// NewClient returns a client whose connections dial makes; messages it
// receives are at most maxMessage bytes.
func NewClient(dial func(context.Context) (net.Conn, error), maxMessage int) *Client {
	return &Client{dial: dial, maxMessage: maxMessage}
}

// UseConn makes nc the next connection the client uses, before it dials
// any. The returned func closes nc if no call took it.
func (cl *Client) UseConn(nc net.Conn) (closeUnused func()) {
	cl.mu.Lock()
	cl.first = nc
	cl.mu.Unlock()
	return func() {
		cl.mu.Lock()
		unused := cl.first == nc
		if unused {
			cl.first = nil
		}
		cl.mu.Unlock()
		if unused {
			nc.Close()
		}
	}
}

// Close closes the idle connections; calls in flight go on.
func (cl *Client) Close() error {
	cl.mu.Lock()
	idle := cl.idle
	cl.idle, cl.closed = nil, true
	cl.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
	return nil
}

// get returns an idle connection, the first one, or a new one, and
// whether it is new (it needs the preface).
func (cl *Client) get(ctx context.Context) (*conn, bool, error) {
	cl.mu.Lock()
	if n := len(cl.idle); n > 0 {
		c := cl.idle[n-1]
		cl.idle = cl.idle[:n-1]
		cl.mu.Unlock()
		fresh := c.fresh
		c.fresh = false
		return c, fresh, nil
	}
	first := cl.first
	cl.first = nil
	cl.mu.Unlock()
	if first != nil {
		return newConn(first), true, nil
	}
	nc, err := cl.dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			// Keep what the dial said (a refused peer, a missing socket):
			// the deadline may have fallen just after it.
			return nil, false, fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return nil, false, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return newConn(nc), true, nil
}

// put keeps c for the next call, or closes it.
func (cl *Client) put(c *conn) {
	cl.mu.Lock()
	if !cl.closed && len(cl.idle) < maxIdle {
		cl.idle = append(cl.idle, c)
		c = nil
	}
	cl.mu.Unlock()
	if c != nil {
		c.nc.Close()
	}
}

// Prepare dials a connection and keeps it idle, unless two are idle
// already: a caller that holds one for a long call (a wait) still finds
// one for its next call without dialing.
func (cl *Client) Prepare(ctx context.Context) error {
	cl.mu.Lock()
	ready := len(cl.idle) >= 2
	cl.mu.Unlock()
	if ready {
		return nil
	}
	nc, err := cl.dial(ctx)
	if err != nil {
		return err
	}
	c := newConn(nc)
	c.fresh = true
	cl.put(c)
	return nil
}

// Unary calls method with req and decodes its answer into resp.
func (cl *Client) Unary(ctx context.Context, method string, req, resp protolite.Message) error {
	call, err := cl.Open(ctx, method)
	if err != nil {
		return err
	}
	defer call.Close()
	if err := call.Send(req); err != nil {
		// The server may have refused the request and closed: its answer
		// says why.
		if aerr := call.Answer(resp); aerr != nil && !errors.Is(aerr, ErrUnreachable) {
			return aerr
		}
		return err
	}
	return call.Answer(resp)
}

// Answer decodes the call's one answer into resp and reads the call's end.
func (call *Call) Answer(resp protolite.Message) error {
	if err := call.Recv(resp); err != nil {
		if err == io.EOF {
			return fmt.Errorf("%w: the agent ended the call without an answer", ErrUnreachable)
		}
		return err
	}
	if err := call.Recv(nil); err != io.EOF {
		return err
	}
	return nil
}

// Open starts a call of method; the first Send sends it. The caller closes
// the call.
func (cl *Client) Open(ctx context.Context, method string) (*Call, error) {
	if len(method) > maxNameLen {
		return nil, fmt.Errorf("method name %q is too long", method)
	}
	c, fresh, err := cl.get(ctx)
	if err != nil {
		return nil, err
	}
	call := &Call{cl: cl, c: c, nc: c.nc, ctx: ctx}
	if fresh {
		call.pending = append(call.pending, preface...)
	}
	call.pending = append(appendHeader(call.pending, frameCall, len(method)), method...)
	// A call whose context ends fails its pending reads and writes at once.
	call.stop = context.AfterFunc(ctx, func() { c.nc.SetDeadline(aLongTimeAgo) })
	return call, nil
}

// aLongTimeAgo is a deadline that makes pending I/O fail at once.
var aLongTimeAgo = time.Unix(1, 0)

// Call is one call in progress, on a connection of its own until Close.
type Call struct {
	cl      *Client
	c       *conn
	nc      net.Conn // c's, for Abort
	ctx     context.Context
	stop    func() bool
	pending []byte // the Call frame, until the first send
	ended   bool   // the Status was read
	broken  bool   // the connection cannot carry another call
	desync  bool   // reads are out of step (mid-frame): no answer can be read
	err     error  // the call's end: nil once Status said so, or why not
}

// fail marks the connection unusable and maps a connection error.
func (call *Call) fail(err error) error {
	call.broken = true
	if call.ctx.Err() != nil {
		return call.ctx.Err()
	}
	if errors.Is(err, ErrUnreachable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnreachable, err)
}

func (call *Call) write(b []byte) error {
	if call.broken || call.ended {
		return call.fail(errors.New("the call is over"))
	}
	if call.pending != nil {
		b = append(call.pending, b...)
		call.pending = nil
	}
	if err := call.c.write(b); err != nil {
		return call.fail(err)
	}
	return nil
}

// Send sends m: the request of a unary or server-streaming call, or the
// next message of a client-streaming one.
func (call *Call) Send(m protolite.Message) error {
	b, err := appendMsg(nil, m)
	if err != nil {
		return err
	}
	return call.write(b)
}

// SendData sends b as one Data frame.
func (call *Call) SendData(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return call.write(append(appendHeader(make([]byte, 0, headerLen+len(b)), frameData, len(b)), b...))
}

// SendFrom sends the next n bytes of r as Data frames. A source that ends
// or fails before n bytes cuts the call: the connection is closed, the
// server drops the request, and the source's error is returned.
func (call *Call) SendFrom(r io.Reader, n int64, buf []byte) error {
	if call.pending != nil {
		if err := call.write(nil); err != nil {
			return err
		}
	}
	for n > 0 {
		m := min(n, maxDataFrame)
		if err := call.write(appendHeader(nil, frameData, int(m))); err != nil {
			return err
		}
		cw := &connWriter{nc: call.c.nc}
		w, err := io.CopyBuffer(cw, io.LimitReader(r, m), buf)
		if cw.err != nil {
			// The server went away or answered early (and closed): the
			// answer may still be read.
			return call.fail(cw.err)
		}
		if err == nil && w < m {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			call.broken, call.desync = true, true
			call.c.nc.Close()
			return &SourceError{Err: err}
		}
		n -= m
	}
	return nil
}

// connWriter writes to a connection and keeps its error apart from the
// source's.
type connWriter struct {
	nc  net.Conn
	err error
}

func (w *connWriter) Write(p []byte) (int, error) {
	n, err := w.nc.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// SourceError is the error of SendFrom whose source failed.
type SourceError struct{ Err error }

func (e *SourceError) Error() string { return e.Err.Error() }
func (e *SourceError) Unwrap() error { return e.Err }

// CloseSend ends a client-streaming request.
func (call *Call) CloseSend() error {
	return call.write(appendHeader(nil, frameEnd, 0))
}

// next reads the next answer frame's header; at a Status it ends the call
// and returns io.EOF or the call's error.
func (call *Call) next() (byte, int64, error) {
	if call.ended {
		if call.err != nil {
			return 0, 0, call.err
		}
		return 0, 0, io.EOF
	}
	if call.desync {
		return 0, 0, call.fail(errors.New("the connection is out of step"))
	}
	kind, n, err := call.c.readHeader()
	if err != nil {
		call.desync = true
		return 0, 0, call.fail(err)
	}
	switch kind {
	case frameStatus, frameLast:
		if kind == frameLast {
			call.broken = true // the server closes the connection
		}
		b, err := call.c.readPayload(kind, n, maxStatusLen)
		if err != nil {
			call.desync = true
			return 0, 0, call.fail(err)
		}
		call.ended, call.err = true, decodeStatus(b)
		if call.err != nil {
			return 0, 0, call.err
		}
		return 0, 0, io.EOF
	case frameMsg, frameData, frameFD:
		return kind, n, nil
	case 'H': // "HTTP/1.1 400 Bad Request": an agent of an older sbx
		call.broken, call.desync = true, true
		return 0, 0, ErrOldAgent
	}
	call.desync = true
	return 0, 0, call.fail(fmt.Errorf("an unknown frame %q", kind))
}

// Recv decodes the next message into m (m nil: expects the end). It
// returns io.EOF when the call ended successfully, and the call's error
// when it failed.
func (call *Call) Recv(m protolite.Message) error {
	kind, n, err := call.next()
	if err != nil {
		return err
	}
	if kind != frameMsg || m == nil {
		call.desync = true
		return call.fail(fmt.Errorf("an unexpected %q frame", kind))
	}
	b, err := call.c.readPayload(kind, n, call.cl.maxMessage)
	if err != nil {
		call.desync = true
		return call.fail(err)
	}
	if err := m.Unmarshal(b); err != nil {
		return call.fail(fmt.Errorf("decode %T: %w", m, err))
	}
	return nil
}

// RecvData returns the size of the next Data frame and a reader of its
// bytes, to read in full before the next Recv or RecvData. It returns
// io.EOF when the call ended successfully, and the call's error when it
// failed.
func (call *Call) RecvData() (int64, io.Reader, error) {
	kind, n, err := call.next()
	if err != nil {
		return 0, nil, err
	}
	if kind != frameData {
		call.desync = true
		return 0, nil, call.fail(fmt.Errorf("an unexpected %q frame", kind))
	}
	return n, &dataReader{call: call, r: call.c.dataReader(n), left: n}, nil
}

// dataReader is one Data frame; a short read breaks the call.
type dataReader struct {
	call *Call
	r    io.Reader
	left int64
}

func (d *dataReader) Read(p []byte) (int, error) {
	if d.left == 0 {
		return 0, io.EOF
	}
	n, err := d.r.Read(p)
	d.left -= int64(n)
	if err != nil && d.left > 0 {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		d.call.desync = true
		return n, d.call.fail(err)
	}
	if d.left == 0 {
		err = nil
	}
	return n, err
}

func (d *dataReader) WriteTo(w io.Writer) (int64, error) {
	var n int64
	var err error
	if wt, ok := d.r.(io.WriterTo); ok {
		n, err = wt.WriteTo(w)
	} else {
		n, err = io.Copy(w, d.r)
	}
	d.left -= n
	if d.left > 0 {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		// A writer's failure leaves the connection mid-frame too.
		d.call.broken, d.call.desync = true, true
		if d.call.ctx.Err() != nil {
			err = d.call.ctx.Err()
		}
	}
	return n, err
}

// Abort makes the call's pending and later reads and writes fail at once;
// it may be called from any goroutine.
func (call *Call) Abort() { call.nc.SetDeadline(aLongTimeAgo) }

// Close ends the call. A call that ended (its Status read) on time leaves
// its connection to the next call; any other is closed, which the server
// takes as the client going away.
func (call *Call) Close() {
	if call.c == nil {
		return
	}
	stopped := call.stop()
	if call.ended && !call.broken && stopped && call.c.br.Buffered() == 0 {
		call.cl.put(call.c)
	} else {
		call.c.nc.Close()
	}
	call.c = nil
}
