// Package agentwire is the protocol between sbx's host and the agent in
// each sandbox: calls over a Unix stream connection, one call at a time per
// connection, each made of frames.
//
// Why not Connect over HTTP, as the public API is: the agent is a new
// process in every sandbox, and on the benchmark VM every page a starting
// process touches costs tens of µs. net/http, crypto/tls and Connect were
// most of the agent's start (about 12 ms of a 26 ms start, and 15 ms of
// CPU, per sandbox), and HTTP/2 added goroutine hand-offs to every frame
// of an exec. A call here is a few frames on a socket that the kernel
// already orders and flow-controls.
//
// A frame is a kind byte, a big-endian uint32 payload length and the
// payload. A call is, from the client: a Call frame (the method name),
// then for a unary or server-streaming method exactly one Msg frame (the
// request), or for a client-streaming method any Msg and Data frames and
// an End frame. The server answers with Msg and Data frames and ends the
// call with a Status frame (empty for success, see status.go), after which
// the connection carries the next call. On a Unix socket an answer may be
// an FD frame, a Msg frame sent with a file's descriptor (fd.go). A client that goes away closes
// the connection: the server cancels the call's context.
package agentwire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/sbx-run/sbx/internal/protolite"
)

// Frame kinds.
const (
	frameCall   byte = 'C' // the method name; starts a call
	frameMsg    byte = 'M' // one protobuf message
	frameData   byte = 'D' // raw bytes (file content)
	frameEnd    byte = 'E' // the end of a client-streaming request
	frameStatus byte = 'S' // the end of a call: empty or an error
	// frameLast is a Status after which the server closes the connection:
	// its handler ended before the end of the request, whose rest cannot
	// be skipped.
	frameLast byte = 'L'
)

const (
	headerLen = 5
	// maxNameLen bounds a method name.
	maxNameLen = 256
	// maxStatusLen bounds a Status frame.
	maxStatusLen = 64 << 10
	// bufSize is the size of each connection's read buffer. Small: every
	// sandbox's client keeps two or three connections for its life (the
	// server's memory per idle sandbox), and reads of more than the
	// buffer holds (large messages, file data) go to the socket directly.
	bufSize = 8 << 10
)

// conn is one connection with its read buffer. Reads happen on one
// goroutine at a time (the protocol's turns say which); writes are
// serialized by wmu.
type conn struct {
	nc  net.Conn
	br  *bufio.Reader
	wmu sync.Mutex
	// fresh says no call was made on the connection yet (a client's
	// prepared connection): the next one sends the preface.
	fresh bool
	// wantFD makes the reads use recvmsg, which puts a descriptor that
	// comes with the bytes into fd (-1: none); see fd.go.
	wantFD bool
	fd     int
}

func newConn(nc net.Conn) *conn {
	c := &conn{nc: nc, fd: -1}
	c.br = bufio.NewReaderSize(sockReader{c}, bufSize)
	return c
}

// readHeader reads the next frame's kind and payload length.
func (c *conn) readHeader() (byte, int64, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, 0, err
	}
	return h[0], int64(binary.BigEndian.Uint32(h[1:])), nil
}

// readPayload reads a payload of n bytes, at most limit.
func (c *conn) readPayload(kind byte, n int64, limit int) ([]byte, error) {
	if n > int64(limit) {
		return nil, fmt.Errorf("a %q frame of %d bytes is over the limit of %d", kind, n, limit)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(c.br, b)
	return b, err
}

// appendHeader appends a frame header for a payload of n bytes.
func appendHeader(b []byte, kind byte, n int) []byte {
	return binary.BigEndian.AppendUint32(append(b, kind), uint32(n))
}

// appendMsg appends m as a Msg frame.
func appendMsg(b []byte, m protolite.Message) ([]byte, error) {
	start := len(b)
	b = appendHeader(b, frameMsg, 0)
	b, err := m.MarshalAppend(b)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", m, err)
	}
	binary.BigEndian.PutUint32(b[start+1:], uint32(len(b)-start-headerLen))
	return b, nil
}

// write writes b, whole frames, in one call.
func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

// dataReader returns a reader of the next n bytes of the connection: what
// the read buffer holds, then the socket itself, so that a file's
// ReadFrom can splice(2) from it. The caller reads all n bytes before the
// next frame.
func (c *conn) dataReader(n int64) io.Reader {
	head := min(int64(c.br.Buffered()), n)
	if head == n {
		return io.LimitReader(c.br, n)
	}
	return &splitReader{head: io.LimitReader(c.br, head), tail: &io.LimitedReader{R: c.nc, N: n - head}}
}

// splitReader is the buffered head of a Data frame, then its socket tail.
// WriteTo sends the head with a write and the tail through the writer's
// ReadFrom, which for an *os.File or a TCP connection is splice(2).
type splitReader struct {
	head io.Reader
	tail *io.LimitedReader
}

func (s *splitReader) Read(p []byte) (int, error) {
	n, err := s.head.Read(p)
	if err == io.EOF {
		return s.tail.Read(p)
	}
	return n, err
}

func (s *splitReader) WriteTo(w io.Writer) (int64, error) {
	n, err := io.Copy(onlyWriter{w}, s.head)
	if err != nil {
		return n, err
	}
	var m int64
	if rf, ok := w.(io.ReaderFrom); ok {
		m, err = rf.ReadFrom(s.tail)
	} else {
		m, err = io.Copy(w, s.tail)
	}
	if err == nil && s.tail.N > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n + m, err
}

type onlyWriter struct{ io.Writer }
