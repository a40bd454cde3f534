package agentwire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/protolite"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Handler serves one call. Its error ends the call as the Status; a
// *sandbox.Error keeps its kind and reason on the wire.
type Handler func(ctx context.Context, call *ServerCall) error

// Method is one method a Server serves.
type Method struct {
	Handle Handler
	// ClientStream says the request is a stream of Msg and Data frames
	// ended by End; otherwise it is exactly one Msg frame.
	ClientStream bool
	// MaxMessage bounds each Msg frame of the request.
	MaxMessage int
}

// Server serves calls to its methods.
type Server struct {
	methods map[string]Method
	// Before, if set, is called before each call's handler; After after
	// its Status was written.
	Before, After func(method string)

	mu sync.Mutex
	// conns are the connections served, each with whether a call is in
	// flight on it.
	conns map[*conn]bool
	// shutting is set by Shutdown; drained is closed once it left no
	// connection.
	shutting bool
	drained  chan struct{}
}

// NewServer returns a server of methods, keyed by name.
func NewServer(methods map[string]Method) *Server {
	return &Server{methods: methods, conns: map[*conn]bool{}}
}

// Serve accepts connections on ln and serves each until ln fails; it
// returns the error of Accept.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return err
		}
		go s.ServeConn(ctx, nc)
	}
}

// Close closes every connection being served; their calls' contexts end.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.nc.Close()
	}
}

// Shutdown closes the connections that wait for a call, and each other
// one as soon as its call ended, until ctx ends; then it closes the rest.
// It returns once no connection is left.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	if s.drained == nil {
		s.drained = make(chan struct{})
	}
	drained := s.drained
	s.shutting = true
	for c, busy := range s.conns {
		if !busy {
			c.nc.Close()
		}
	}
	s.checkDrained()
	s.mu.Unlock()
	select {
	case <-drained:
	case <-ctx.Done():
		s.Close()
		<-drained
	}
}

// checkDrained closes drained once a shutdown left no connection; s.mu
// is held.
func (s *Server) checkDrained() {
	if s.shutting && len(s.conns) == 0 && s.drained != nil {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
}

// setBusy records whether a call is in flight on c; during a shutdown, a
// connection whose call ended is closed.
func (s *Server) setBusy(c *conn, busy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; ok {
		s.conns[c] = busy
		if !busy && s.shutting {
			c.nc.Close()
		}
	}
}

// ServeConn serves calls on nc, one after the other, until the client
// closes it, a frame breaks the protocol, or ctx ends; then it closes nc.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) {
	c := newConn(nc)
	s.mu.Lock()
	if s.shutting {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = false
	s.mu.Unlock()
	defer func() {
		nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.checkDrained()
		s.mu.Unlock()
	}()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	var p [len(preface)]byte
	if _, err := io.ReadFull(c.br, p[:]); err != nil || string(p[:]) != preface {
		return
	}
	for s.serveCall(ctx, c) {
	}
}

// serveCall serves the connection's next call and reports whether the
// connection can carry another.
func (s *Server) serveCall(ctx context.Context, c *conn) bool {
	kind, n, err := c.readHeader()
	if err != nil || kind != frameCall {
		return false
	}
	name, err := c.readPayload(kind, n, maxNameLen)
	if err != nil {
		return false
	}
	m, ok := s.methods[string(name)]
	if !ok {
		// The request's frames cannot be told apart without the method:
		// answer, then drop the connection.
		_ = c.write(appendStatus(nil, frameLast, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "the agent has no method %q; the host and the agent are of different sbx versions", name)))
		return false
	}
	call := &ServerCall{c: c, method: m, consumed: make(chan struct{})}
	if !m.ClientStream {
		kind, n, err := c.readHeader()
		if err != nil || kind != frameMsg {
			return false
		}
		if n > int64(m.MaxMessage) {
			_ = c.write(appendStatus(nil, frameLast, tooLarge(string(name), n, m.MaxMessage)))
			return false
		}
		if call.req, err = c.readPayload(kind, n, m.MaxMessage); err != nil {
			return false
		}
		call.ended = true
		call.consume()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Busy from here until the call's end is written (below): Shutdown
	// lets the call finish.
	s.setBusy(c, true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A request not read to its end by now is read no more.
		defer call.consume()
		if s.Before != nil {
			s.Before(string(name))
		}
		err := m.Handle(ctx, call)
		if errors.Is(err, errBroken) {
			c.nc.Close()
			return
		}
		call.consume()
		reply := call.reply
		if err != nil {
			reply = nil
		}
		kind := frameStatus
		if !call.ended {
			kind = frameLast
		}
		werr := c.write(appendStatus(reply, kind, err))
		s.setBusy(c, false)
		if s.After != nil {
			s.After(string(name))
		}
		if werr != nil {
			c.nc.Close()
		}
	}()
	<-call.consumed
	if !call.ended {
		// The handler returned before the end of its request: the rest of
		// it cannot be skipped reliably, so the connection ends here.
		<-done
		return false
	}
	// While the handler runs, the client sends nothing (one call at a time)
	// unless it goes away: a read that ends is the client leaving.
	if _, err := c.br.Peek(1); err != nil {
		cancel()
		<-done
		return false
	}
	<-done
	return true
}

// tooLarge is the error of a request message over its method's bound.
func tooLarge(what string, n int64, limit int) error {
	return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "a message of %s is %d bytes; the limit is %d", what, n, limit)
}

// appendStatus appends the Status frame (of kind frameStatus or
// frameLast) of err.
func appendStatus(b []byte, kind byte, err error) []byte {
	p := encodeStatus(err)
	return append(appendHeader(b, kind, len(p)), p...)
}

// errBroken is the error of a handler whose connection is out of step (a
// Data frame cut short): no Status can follow, the connection is closed.
var errBroken = errors.New("agentwire: the connection broke mid-frame")

// ServerCall is one call, as its handler sees it.
type ServerCall struct {
	c      *conn
	method Method
	req    []byte
	// consumed is closed once the request was read to its end (ended is
	// set then) or the handler returned, whichever is first.
	consumed chan struct{}
	once     sync.Once
	ended    bool
	reply    []byte // the last message, sent with the Status (Reply)
}

func (sc *ServerCall) consume() { sc.once.Do(func() { close(sc.consumed) }) }

// Request decodes the request of a unary or server-streaming call.
func (sc *ServerCall) Request(m protolite.Message) error {
	if err := m.Unmarshal(sc.req); err != nil {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "decode the request: %v", err)
	}
	return nil
}

// Recv decodes the next message of a client-streaming request into m. It
// returns io.EOF at the request's end, and an error for a Data frame.
func (sc *ServerCall) Recv(m protolite.Message) error {
	kind, n, err := sc.next()
	if err != nil {
		return err
	}
	if kind != frameMsg {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "expected a message, got a %q frame", kind)
	}
	if n > int64(sc.method.MaxMessage) {
		return tooLarge("the request", n, sc.method.MaxMessage)
	}
	b, err := sc.c.readPayload(kind, n, sc.method.MaxMessage)
	if err != nil {
		return err
	}
	if err := m.Unmarshal(b); err != nil {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "decode the request: %v", err)
	}
	return nil
}

// RecvData returns the size of the next Data frame of a client-streaming
// request and a reader of its bytes, which the caller reads to the end
// before the next Recv or RecvData. It returns io.EOF at the request's end
// and an error for a Msg frame.
func (sc *ServerCall) RecvData() (int64, io.Reader, error) {
	kind, n, err := sc.next()
	if err != nil {
		return 0, nil, err
	}
	if kind != frameData {
		return 0, nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "expected data, got a %q frame", kind)
	}
	return n, sc.c.dataReader(n), nil
}

// next reads the next frame header of a client-streaming request.
func (sc *ServerCall) next() (byte, int64, error) {
	if !sc.method.ClientStream || sc.ended {
		return 0, 0, io.EOF
	}
	kind, n, err := sc.c.readHeader()
	if err != nil {
		return 0, 0, fmt.Errorf("the client went away mid-request: %w", err)
	}
	switch kind {
	case frameEnd:
		sc.ended = true
		sc.consume()
		return 0, 0, io.EOF
	case frameMsg, frameData:
		return kind, n, nil
	}
	return 0, 0, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "a %q frame in a request", kind)
}

// Send sends m to the client.
func (sc *ServerCall) Send(m protolite.Message) error {
	b, err := appendMsg(nil, m)
	if err != nil {
		return err
	}
	return sc.c.write(b)
}

// Reply sets the call's last message: it goes out with the Status, in
// one write, if the handler then returns nil. Return Reply's result.
func (sc *ServerCall) Reply(m protolite.Message) error {
	b, err := appendMsg(nil, m)
	if err != nil {
		return err
	}
	sc.reply = b
	return nil
}

// SendData sends b as one Data frame.
func (sc *ServerCall) SendData(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	sc.c.wmu.Lock()
	defer sc.c.wmu.Unlock()
	h := appendHeader(make([]byte, 0, headerLen), frameData, len(b))
	bufs := net.Buffers{h, b}
	_, err := bufs.WriteTo(sc.c.nc)
	return err
}

// maxDataFrame is the largest Data frame a sender makes.
const maxDataFrame = 1 << 30

// SendFile sends n bytes of f as Data frames, with sendfile(2). If f ends
// before n bytes (it shrank meanwhile), the connection is closed, so the
// client sees a cut transfer; the handler must then return the error.
func (sc *ServerCall) SendFile(f *os.File, n int64) error {
	sc.c.wmu.Lock()
	defer sc.c.wmu.Unlock()
	for n > 0 {
		m := min(n, maxDataFrame)
		if _, err := sc.c.nc.Write(appendHeader(nil, frameData, int(m))); err != nil {
			return err
		}
		if err := sendFile(sc.c.nc, f, m); err != nil {
			sc.c.nc.Close()
			return fmt.Errorf("%w: %w", errBroken, err)
		}
		n -= m
	}
	return nil
}

// sendFile sends n bytes of f to nc with sendfile(2).
func sendFile(nc net.Conn, f *os.File, n int64) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		m, err := io.Copy(nc, io.LimitReader(f, n))
		if err == nil && m < n {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	fd := int(f.Fd())
	var serr error
	werr := rc.Write(func(sock uintptr) bool {
		for n > 0 {
			m, err := unix.Sendfile(int(sock), fd, nil, int(min(n, 1<<30)))
			if m > 0 {
				n -= int64(m)
			}
			switch {
			case err == unix.EAGAIN:
				return false // wait until the socket can take more
			case err == unix.EINTR:
				continue
			case err != nil:
				serr = err
				return true
			case m == 0:
				serr = io.ErrUnexpectedEOF // the file shrank
				return true
			}
		}
		return true
	})
	if werr != nil {
		return werr
	}
	return serr
}
