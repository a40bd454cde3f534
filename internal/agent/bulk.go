package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// The bulk file path: raw bytes over HTTP/1.1, without protobuf framing,
// for large transfers. The agent takes over the connection (Hijack) so that
// the kernel moves the bytes: splice(2) from the socket into the file on a
// write, sendfile(2) from the file into the socket on a read. Paths resolve
// in the agent's own mount namespace, the sandbox's, exactly as for the
// Connect file RPCs, and pass the same validation and bounds.
//
//	PUT  BulkPath?path=/abs/path&mode=644   Content-Length: N   (body: N bytes)
//	  -> 200, body {"size":N}
//	GET  BulkPath?path=/abs/path
//	  -> 200, Content-Length: N (a regular file) or chunked (anything else)
//
// Errors answer with a non-2xx status, the Connect code name in
// BulkCodeHeader, the reason in Sbx-Reason and the message as the body.
const (
	// BulkPath is the agent's bulk file endpoint.
	BulkPath = "/bulk/v1/file"
	// BulkCodeHeader carries an error's Connect code name ("not_found").
	BulkCodeHeader = "Sbx-Code"
)

// maxBulkErrorBytes bounds an error message read back from the agent.
const maxBulkErrorBytes = 64 << 10

// bulkHandler serves BulkPath.
func (s *Server) bulkHandler(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPut:
		s.bulkWrite(w, r)
	case http.MethodGet:
		s.bulkRead(w, r)
	default:
		w.Header().Set("Allow", "GET, PUT")
		writeBulkError(w, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "%s %s: use GET to read a file or PUT to write one", r.Method, BulkPath))
	}
}

// parseMode reads an octal permission mode; empty means 0644.
func parseMode(s string) (os.FileMode, error) {
	if s == "" {
		return 0o644, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "mode %q is not an octal permission mode of at most 7777", s)
	}
	mode := sandbox.FileModeFromUnix(uint32(m))
	if mode.Perm() == 0 {
		mode |= 0o644
	}
	return mode, nil
}

// bulkWrite receives exactly Content-Length bytes into a temporary file
// that replaces the target only once all of them arrived (writeAtomic): a
// cut connection or a short body leaves the old file.
func (s *Server) bulkWrite(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	path, err := cleanPath(q.Get("path"))
	if err != nil {
		writeBulkError(w, err)
		return
	}
	mode, err := parseMode(q.Get("mode"))
	if err != nil {
		writeBulkError(w, err)
		return
	}
	size := r.ContentLength
	if size < 0 {
		writeBulkError(w, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "write %s: the request has no Content-Length; send the size up front", path))
		return
	}
	if limit := s.cfg.MaxFileBytes; limit > 0 && size > limit {
		writeBulkError(w, sandbox.InvalidArgument(sandbox.ReasonFileTooLarge, "write %s: the file is over the limit of %d bytes", path, limit))
		return
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		writeBulkError(w, sandbox.FailedPrecondition(sandbox.ReasonIsDirectory, "write %s: the path is a directory", path))
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		writeBulkError(w, fsError("write", path, err))
		return
	}
	defer s.trimSoon()

	// Take the connection over to splice from it; over HTTP/2 (which the
	// host does not use for this) read the body as usual.
	var src io.Reader = r.Body
	var raw net.Conn
	var brw *bufio.ReadWriter
	if c, b, herr := http.NewResponseController(w).Hijack(); herr == nil {
		raw, brw = c, b
		defer raw.Close()
		if strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
			// The checks passed: the client may send the body now.
			io.WriteString(brw.Writer, "HTTP/1.1 100 Continue\r\n\r\n")
			if brw.Writer.Flush() != nil {
				return
			}
		}
		src = hijackedBody(b.Reader, c, size)
	}
	var written int64
	var short error
	err = writeAtomic(path, mode, false, func(f *os.File) error {
		var cerr error
		written, cerr = copyIntoFile(f, src, size)
		if cerr == nil && written < size {
			short = sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "write %s: the connection ended after %d of %d bytes; the old file is kept", path, written, size)
			return short
		}
		return cerr
	})
	switch {
	case short != nil:
		err = short
	case err != nil:
		err = fsError("write", path, err)
	}
	body := fmt.Sprintf("{\"size\":%d}\n", written)
	if raw == nil {
		if err != nil {
			writeBulkError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
		return
	}
	if err != nil {
		writeRawError(brw.Writer, err)
	} else {
		fmt.Fprintf(brw.Writer, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	}
	brw.Writer.Flush()
}

// hijackedBody is the request body of a hijacked connection: the part the
// server had buffered already, then the socket itself, to size bytes. The
// socket part stays an *io.LimitedReader of the *net.UnixConn, which
// (*os.File).ReadFrom turns into splice(2).
func hijackedBody(buffered *bufio.Reader, conn net.Conn, size int64) io.Reader {
	n := min(int64(buffered.Buffered()), size)
	head := io.LimitReader(buffered, n)
	tail := &io.LimitedReader{R: conn, N: size - n}
	return &splitReader{head: head, tail: tail, all: io.MultiReader(head, tail)}
}

// splitReader is a head reader followed by a socket tail.
type splitReader struct {
	head io.Reader
	tail *io.LimitedReader
	all  io.Reader
}

func (s *splitReader) Read(p []byte) (int, error) { return s.all.Read(p) }

// copyIntoFile copies size bytes of src into f: the buffered head with a
// write, the socket tail with splice(2) through (*os.File).ReadFrom.
func copyIntoFile(f *os.File, src io.Reader, size int64) (int64, error) {
	if size > 0 {
		// Allocating the blocks up front spares the filesystem growing the
		// file a page at a time; where it cannot (EOPNOTSUPP), it does.
		_ = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, size)
	}
	sr, ok := src.(*splitReader)
	if !ok {
		buf := make([]byte, min(size, defaultChunk))
		if len(buf) == 0 {
			buf = make([]byte, 1)
		}
		return io.CopyBuffer(fileOnly{f}, io.LimitReader(src, size), buf)
	}
	n, err := io.Copy(fileOnly{f}, sr.head)
	if err != nil {
		return n, err
	}
	m, err := f.ReadFrom(sr.tail)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n + m, err
}

// fileOnly hides *os.File's ReadFrom, for copies that must use a buffer.
type fileOnly struct{ f *os.File }

func (w fileOnly) Write(p []byte) (int, error) { return w.f.Write(p) }

// bulkRead sends a regular file with sendfile(2) over the hijacked
// connection, with its size as Content-Length; anything else (a FIFO, a
// file under /proc that reports size 0) streams chunked, as the Connect
// Read would.
func (s *Server) bulkRead(w http.ResponseWriter, r *http.Request) {
	path, err := cleanPath(r.URL.Query().Get("path"))
	if err != nil {
		writeBulkError(w, err)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		writeBulkError(w, fsError("read", path, err))
		return
	}
	defer f.Close()
	defer s.trimSoon()
	fi, err := f.Stat()
	if err != nil {
		writeBulkError(w, fsError("read", path, err))
		return
	}
	if fi.IsDir() {
		writeBulkError(w, sandbox.FailedPrecondition(sandbox.ReasonIsDirectory, "read %s: the path is a directory; list it instead", path))
		return
	}
	size := fi.Size()
	if !fi.Mode().IsRegular() || size == 0 {
		w.Header().Set("Content-Type", "application/octet-stream")
		buf := make([]byte, defaultChunk)
		_, _ = io.CopyBuffer(struct{ io.Writer }{w}, f, buf)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		_, _ = io.Copy(w, io.LimitReader(f, size))
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw.Writer, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", size)
	if brw.Writer.Flush() != nil {
		return
	}
	// A file that shrinks meanwhile ends the body short, which the client
	// sees as a cut transfer; one that grows is cut at the size announced.
	_ = sendFile(conn, f, size)
}

// sendFile sends n bytes of f to conn with sendfile(2).
func sendFile(conn net.Conn, f *os.File, n int64) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		_, err := io.Copy(conn, io.LimitReader(f, n))
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

// bulkStatus maps a Connect code to the HTTP status of a bulk error.
func bulkStatus(code connect.Code) int {
	switch code {
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeOutOfRange:
		return http.StatusBadRequest
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized
	case connect.CodePermissionDenied:
		return http.StatusForbidden
	case connect.CodeNotFound:
		return http.StatusNotFound
	case connect.CodeAlreadyExists, connect.CodeAborted:
		return http.StatusConflict
	case connect.CodeResourceExhausted:
		return http.StatusTooManyRequests
	case connect.CodeUnavailable:
		return http.StatusServiceUnavailable
	case connect.CodeDeadlineExceeded:
		return http.StatusGatewayTimeout
	case connect.CodeCanceled:
		return 499
	}
	return http.StatusInternalServerError
}

// bulkErrorParts returns the code, reason and message of err as toWire
// would map it.
func bulkErrorParts(err error) (connect.Code, string, string) {
	ce := toWire(err).(*connect.Error)
	return ce.Code(), ce.Meta().Get(reasonHeader), ce.Message()
}

func writeBulkError(w http.ResponseWriter, err error) {
	code, reason, msg := bulkErrorParts(err)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set(BulkCodeHeader, code.String())
	if reason != "" {
		h.Set(reasonHeader, reason)
	}
	w.WriteHeader(bulkStatus(code))
	io.WriteString(w, msg)
}

// writeRawError writes an error response on a hijacked connection.
func writeRawError(w io.Writer, err error) {
	code, reason, msg := bulkErrorParts(err)
	reason = strings.Map(headerSafe, reason)
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n%s: %s\r\n%s: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		bulkStatus(code), http.StatusText(bulkStatus(code)), BulkCodeHeader, code.String(), reasonHeader, reason, len(msg), msg)
}

// headerSafe drops the characters that would break a header line.
func headerSafe(r rune) rune {
	if r == '\r' || r == '\n' {
		return -1
	}
	return r
}
