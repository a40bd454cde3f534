// Package fdcopy sends a regular file's bytes into a stream socket with
// sendfile(2) where Go's net package does not: a *net.TCPConn's ReadFrom
// uses sendfile, but a *net.UnixConn has no ReadFrom for streams, so
// net/http (its response writer, its client's request bodies) copies a
// file into a Unix socket through a 32 KiB buffer, one read and one
// write per 32 KiB. The server's bulk file endpoint and the Go SDK's
// bulk client use it on Unix-socket connections.
package fdcopy

import (
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxSendfile is the most one sendfile(2) call moves (the kernel's own
// bound is 0x7ffff000 bytes).
const maxSendfile = 1 << 30

// SendFile writes the content of src to dst with sendfile(2) when src is
// an *os.File holding a regular file, or an *io.LimitedReader over one
// (then at most its N bytes, and N is lowered by what was sent). It
// starts at src's offset and advances it. handled is false when src is
// not such a file; nothing was written then and the caller copies. A file
// that ends early ends the copy with n short and no error, as io.Copy's
// reader EOF does.
func SendFile(dst syscall.Conn, src io.Reader) (n int64, handled bool, err error) {
	lr, limited := src.(*io.LimitedReader)
	remain := int64(1<<63 - 1)
	if limited {
		src, remain = lr.R, lr.N
	}
	f, ok := src.(*os.File)
	if !ok {
		return 0, false, nil
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return 0, false, nil
	}
	out, err := dst.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	in, err := f.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	defer func() {
		if limited {
			lr.N -= n
		}
	}()
	for remain > 0 {
		var m int
		var serr error
		cerr := in.Control(func(sfd uintptr) {
			werr := out.Write(func(dfd uintptr) bool {
				m, serr = unix.Sendfile(int(dfd), int(sfd), nil, int(min(remain, maxSendfile)))
				return serr != unix.EAGAIN
			})
			if serr == nil {
				serr = werr
			}
		})
		if serr == nil {
			serr = cerr
		}
		if m > 0 {
			n += int64(m)
			remain -= int64(m)
		}
		if serr != nil {
			return n, true, &os.SyscallError{Syscall: "sendfile", Err: serr}
		}
		if m <= 0 {
			return n, true, nil // the file ended
		}
	}
	return n, true, nil
}
