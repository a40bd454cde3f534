package agentwire

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/protolite"
)

// Passing a file's descriptor instead of its bytes.
//
// A large file's bytes crossing the agent's socket cost two kernel copies
// and the agent's and the host's wake-ups on every socket buffer's worth;
// on a 2-core machine that was half of a 1 GiB round trip's CPU. When the
// socket is a Unix one, the agent can instead open the file (resolving the
// path inside the sandbox, as always) and pass the open descriptor along
// with its answer (SCM_RIGHTS): the host then moves the bytes between the
// file and its own client with sendfile or splice, and the agent's socket
// carries only the call.
//
// A Msg frame that carries a descriptor is an FD frame. The receiver
// checks that a descriptor came and that it is a regular file; a sender
// whose socket cannot carry one (a TCP connection, a sandbox kernel such
// as gVisor's that drops it) sends a plain Msg frame and then the bytes as
// Data frames, or its receiver sees an FD frame without a descriptor
// (ErrFDLost) and uses the call's plain variant.

// frameFD is a Msg frame sent together with one descriptor.
const frameFD byte = 'F'

// ErrNoFD says the connection cannot carry descriptors (it is not a Unix
// socket, or the kernel refused): send the bytes instead.
var ErrNoFD = errors.New("the connection cannot pass file descriptors")

// ErrFDLost is the error of RecvFD when the agent said it sent a
// descriptor and none arrived: the call cannot go on; make it again
// without descriptors.
var ErrFDLost = errors.New("the agent passed a file descriptor and none arrived")

// maxFDs is how many descriptors one read takes; more are closed.
const maxFDs = 4

// sockReader is what a connection's read buffer reads from: the socket,
// with recvmsg(2) while a descriptor may come (Call.RecvFD). Any
// descriptor that arrives at other times is dropped by the kernel (a read
// without room for control messages closes them).
type sockReader struct{ c *conn }

func (r sockReader) Read(p []byte) (int, error) {
	c := r.c
	if !c.wantFD {
		return c.nc.Read(p)
	}
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return c.nc.Read(p)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	oob := make([]byte, unix.CmsgSpace(4*maxFDs))
	var n, oobn int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), p, oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if oobn > 0 {
		c.takeFDs(oob[:oobn])
	}
	if err != nil {
		return 0, &net.OpError{Op: "read", Net: "unix", Err: os.NewSyscallError("recvmsg", err)}
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// takeFDs keeps the first descriptor of the control messages in oob and
// closes every other.
func (c *conn) takeFDs(oob []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if c.fd < 0 {
				c.fd = fd
			} else {
				unix.Close(fd)
			}
		}
	}
}

// dropFD closes a descriptor received and not taken.
func (c *conn) dropFD() {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// RecvFD receives the next answer message into m, and the descriptor sent
// with it: a regular file, or nil when the agent sent a plain message (the
// content then follows as Data frames). It returns ErrFDLost when the
// agent said it sent a descriptor and none arrived, and an error for a
// descriptor that is not a regular file; the call is then unusable.
func (call *Call) RecvFD(m protolite.Message) (*os.File, error) {
	c := call.c
	c.dropFD()
	c.wantFD = true
	kind, n, err := call.next()
	if err == nil && kind != frameMsg && kind != frameFD {
		call.desync = true
		err = call.fail(fmt.Errorf("an unexpected %q frame", kind))
	}
	var b []byte
	if err == nil {
		if b, err = c.readPayload(kind, n, call.cl.maxMessage); err != nil {
			call.desync = true
			err = call.fail(err)
		}
	}
	c.wantFD = false
	fd := c.fd
	c.fd = -1
	if err != nil || kind == frameMsg {
		if fd >= 0 {
			unix.Close(fd)
		}
		if err != nil {
			return nil, err
		}
		return nil, unmarshal(call, b, m)
	}
	if fd < 0 {
		call.broken = true
		return nil, ErrFDLost
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		call.broken = true
		return nil, fmt.Errorf("%w: the agent passed a descriptor that is not a regular file (mode %#o)", ErrUnreachable, st.Mode&unix.S_IFMT)
	}
	f := os.NewFile(uintptr(fd), "agent-file")
	if err := unmarshal(call, b, m); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func unmarshal(call *Call, b []byte, m protolite.Message) error {
	if err := m.Unmarshal(b); err != nil {
		return call.fail(fmt.Errorf("decode %T: %w", m, err))
	}
	return nil
}

// SendFD sends m with f's descriptor attached (an FD frame). It returns
// an error wrapping ErrNoFD, having sent nothing, when the connection
// cannot carry descriptors: the caller then sends m and the bytes.
func (sc *ServerCall) SendFD(m protolite.Message, f *os.File) error {
	uc, ok := sc.c.nc.(*net.UnixConn)
	if !ok {
		return ErrNoFD
	}
	b, err := appendMsg(nil, m)
	if err != nil {
		return err
	}
	b[0] = frameFD
	raw, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoFD, err)
	}
	var oob []byte
	if err := raw.Control(func(fd uintptr) { oob = unix.UnixRights(int(fd)) }); err != nil {
		return fmt.Errorf("%w: %w", ErrNoFD, err)
	}
	sc.c.wmu.Lock()
	defer sc.c.wmu.Unlock()
	n, _, err := uc.WriteMsgUnix(b, oob, nil)
	runtime.KeepAlive(f)
	if err != nil && n == 0 {
		return fmt.Errorf("%w: %w", ErrNoFD, err)
	}
	if err == nil && n < len(b) {
		_, err = sc.c.nc.Write(b[n:])
	}
	if err != nil {
		sc.c.nc.Close()
		return fmt.Errorf("%w: %w", errBroken, err)
	}
	return nil
}
