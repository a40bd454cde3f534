// Package usermap makes user namespaces with a given id mapping, for
// idmapped mounts, from a small helper process.
//
// A Go program cannot unshare a user namespace (it is multithreaded), so a
// namespace is made by cloning a child into one. A clone into a new user
// namespace cannot use vfork, so it copies the parent's page tables and
// write-protects every page of it; a large parent (sbx serve, with its
// caches and connections) then pays a fault for each page it writes next,
// which on a paravirtualized host costs it tens of milliseconds per
// namespace. The server therefore asks a helper to do it: the sbx-agent
// binary started once in maker mode (MakerFlag), whose few megabytes fork
// cheaply, and which hands each namespace back as a descriptor.
package usermap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// MakerFlag is the flag that starts the agent binary as a maker: it then
// serves Make requests on descriptor 3 until that socket closes.
const MakerFlag = "--sbx-usermap-maker"

// Size is how many ids a namespace maps: 0..Size-1 to base..base+Size-1.
const Size = 1 << 16

// New returns a user namespace (an nsfs file) mapping uids and gids
// 0..Size-1 to base..base+Size-1, made by a child of this process that the
// kernel stops at its exec of helper (it is traced) and that is killed once
// the namespace is open: nothing of helper ever runs. Callers that are
// large processes should use a Maker instead.
func New(helper string, base uint32) (*os.File, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(base), Size: Size}}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	// Should helper ever run (it cannot: a failed PTRACE_TRACEME fails the
	// start, and the child dies with this thread), an unknown flag makes
	// it exit at once.
	p, err := os.StartProcess(helper, []string{"sbx-userns", "--sbx-userns-helper-never-runs"}, &os.ProcAttr{
		Env:   []string{},
		Files: []*os.File{devnull, devnull, devnull},
		Sys: &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: m,
			GidMappings: m,
			// The sandbox's root may call setgroups, as without a userns.
			GidMappingsEnableSetgroups: true,
			Ptrace:                     true,
			Pdeathsig:                  syscall.SIGKILL,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("make a user namespace for uids %d..%d: %w", base, base+Size-1, err)
	}
	f, openErr := os.Open(fmt.Sprintf("/proc/%d/ns/user", p.Pid))
	_ = p.Kill()
	_, _ = p.Wait()
	if openErr != nil {
		return nil, fmt.Errorf("open the user namespace for uids %d..%d: %w", base, base+Size-1, openErr)
	}
	return f, nil
}

// Maker makes user namespaces in a helper process (see the package
// comment). It is safe for concurrent use; requests are served one at a
// time. A helper that died is started again on the next request.
type Maker struct {
	helper string

	mu   sync.Mutex
	cmd  *exec.Cmd
	conn *net.UnixConn
}

// NewMaker returns a Maker whose helper is the agent binary at helper; the
// helper starts on the first request.
func NewMaker(helper string) *Maker { return &Maker{helper: helper} }

// Make returns a user namespace mapping 0..Size-1 to base..base+Size-1.
func (m *Maker) Make(base uint32) (*os.File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conn == nil {
		if err := m.start(); err != nil {
			return nil, err
		}
	}
	f, err := m.request(base)
	if err != nil && !isRefusal(err) {
		// The helper is gone or confused: the next request starts a new one.
		m.stopLocked()
	}
	return f, err
}

// refusal is an error the helper answered, as opposed to a broken helper.
type refusal struct{ msg string }

func (r refusal) Error() string { return r.msg }

func isRefusal(err error) bool {
	var r refusal
	return errors.As(err, &r)
}

func (m *Maker) start() error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "usermap"), os.NewFile(uintptr(fds[1]), "usermap-helper")
	defer theirs.Close()
	cmd := exec.Command(m.helper, MakerFlag)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Env = []string{}
	if err := cmd.Start(); err != nil {
		ours.Close()
		return fmt.Errorf("start the user namespace helper %s: %w", m.helper, err)
	}
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	m.cmd, m.conn = cmd, c.(*net.UnixConn)
	return nil
}

// request sends base and receives the namespace's descriptor, or the
// helper's error.
func (m *Maker) request(base uint32) (*os.File, error) {
	var req [4]byte
	binary.LittleEndian.PutUint32(req[:], base)
	if _, err := m.conn.Write(req[:]); err != nil {
		return nil, fmt.Errorf("ask the user namespace helper: %w", err)
	}
	buf := make([]byte, 1024)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := m.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("read the user namespace helper's answer: %w", err)
	}
	if n == 0 {
		return nil, fmt.Errorf("the user namespace helper exited: %w", io.ErrUnexpectedEOF)
	}
	if buf[0] != 0 {
		return nil, refusal{string(buf[1:n])}
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("the user namespace helper sent no descriptor (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("the user namespace helper sent no descriptor (%v)", err)
	}
	unix.CloseOnExec(fds[0])
	return os.NewFile(uintptr(fds[0]), fmt.Sprintf("userns:%d", base)), nil
}

// Pid is the helper's pid, or 0 while none runs.
func (m *Maker) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Close stops the helper.
func (m *Maker) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopLocked()
}

func (m *Maker) stopLocked() {
	if m.conn == nil {
		return
	}
	m.conn.Close() // the helper exits at EOF
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
	m.conn, m.cmd = nil, nil
}

// Serve is the helper's side: it answers requests on the socket at fd
// (descriptor 3 of a helper started by a Maker) until it closes, making
// each namespace with New from this very binary.
func Serve(fd uintptr) error {
	f := os.NewFile(fd, "usermap")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return err
	}
	conn := c.(*net.UnixConn)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	req := make([]byte, 16)
	for {
		n, err := conn.Read(req)
		if err != nil || n == 0 {
			return nil // the server closed it, or is gone
		}
		if n != 4 {
			conn.Write(append([]byte{1}, "malformed request"...))
			continue
		}
		base := binary.LittleEndian.Uint32(req[:4])
		if base < Size {
			conn.Write(append([]byte{1}, fmt.Sprintf("refusing a user namespace that maps ids to host uid %d and the system's below it", base)...))
			continue
		}
		ns, err := New(self, base)
		if err != nil {
			conn.Write(append([]byte{1}, err.Error()...))
			continue
		}
		_, _, err = conn.WriteMsgUnix([]byte{0}, unix.UnixRights(int(ns.Fd())), nil)
		ns.Close()
		if err != nil {
			return err
		}
	}
}
