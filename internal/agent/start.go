package agent

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The start protocol. A runtime that can pass descriptors to the
// container's PID 1 (crun and runc: --preserve-fds) makes a connected pair
// of Unix sockets before it runs the container, keeps one end as the first
// connection of its client and hands the other to the agent (ConnFlag). It
// can then send its first request at once: the request waits in the socket
// buffer while the agent starts and is answered as soon as the agent
// serves, so the host needs no polling for a socket file nor a connect
// retry loop, and learns of an agent that died at start by the connection
// closing. The agent still listens on StateDir/SocketName, for runtimes
// that cannot pass descriptors (runsc), further connections and a server
// that restarted.

// StartEnv is what a runtime adds to the agent's environment: one P
// (GOMAXPROCS=1) while the agent starts. Each P of the Go runtime gets its
// own allocation caches, and each runnable P its own thread, whose fresh
// pages the kernel must fault in one by one, which is expensive on a VM
// (tens of µs a page on the benchmark machine). The agent restores the
// default (runtime.SetDefaultGOMAXPROCS, which follows the sandbox's CPU
// limit) before its first request that moves data, or deferDelay after its
// first answer, and no process it starts sees the variable.
var StartEnv = []string{"GOMAXPROCS=1"}

// ConnFlag is the agent's flag naming the descriptor of its end of the
// pair, e.g. "--conn-fd=3".
const ConnFlag = "conn-fd"

// StartPair returns a connected pair of Unix stream sockets for the start
// protocol: host is the runtime's (see Client.UseConn), sandbox is for the
// agent, to pass as an extra file and close once the agent has it.
func StartPair() (host net.Conn, sandbox *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	hf := os.NewFile(uintptr(fds[0]), "agent-conn")
	defer hf.Close()
	host, err = net.FileConn(hf)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return host, os.NewFile(uintptr(fds[1]), "agent-conn"), nil
}

// UseConn makes conn, the host's end of a StartPair, the client's first
// connection; later ones are dialed as before. Call it before the client's
// first request. The returned func closes conn if no request took it (the
// client owns it once one did); call it when the start is over.
func (c *Client) UseConn(conn net.Conn) (closeUnused func()) { return c.wire.UseConn(conn) }

// ConnFromFD returns the agent's end of the start pair from descriptor fd,
// checking that it is a Unix stream socket; the descriptor is
// closed (the connection holds a close-on-exec duplicate, so no process
// the agent starts inherits it).
func ConnFromFD(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "agent-conn")
	if f == nil {
		return nil, fmt.Errorf("descriptor %d is not valid", fd)
	}
	defer f.Close()
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, fmt.Errorf("descriptor %d is not a socket: %w", fd, err)
	}
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil || dom != unix.AF_UNIX || typ != unix.SOCK_STREAM {
		return nil, fmt.Errorf("descriptor %d is not a Unix stream socket", fd)
	}
	conn, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("descriptor %d: %w", fd, err)
	}
	return conn, nil
}

// deferred is the work the agent leaves out of its path to ready, done
// once its first answer is out:
//   - soon (the warm-up, warm.go): what a fresh sandbox's Init and first
//     exec need, started at once after the first answer, while the host
//     does its own bookkeeping;
//   - later, deferDelay after the first answer: the default GOMAXPROCS
//     (see StartEnv) and the trim base (markTrimBase).
//
// A call that needs GOMAXPROCS earlier restores it itself: one that moves
// file data does, and so does the start of the first sandbox process
// (Server.beforeProcesses): no sandbox process may exist before the Go
// runtime has what it runs with.
type deferred struct {
	soon    []func()
	restore func()
	first   sync.Once
}

// deferDelay is how long after its first answer the agent does the rest:
// past a fresh sandbox's Init and first exec (about 10 ms after the first
// answer when sbx serve creates a sandbox and execs at once), so that the
// work does not land on them, and well before an idle agent (a warm
// pool's) is claimed.
const deferDelay = 30 * time.Millisecond

func newDeferred(soon []func()) *deferred {
	return &deferred{soon: soon, restore: sync.OnceFunc(func() {
		if startedWithOneP {
			runtime.SetDefaultGOMAXPROCS()
		}
	})}
}

// before is called before each call's handler: a call that moves file
// data restores GOMAXPROCS first.
func (d *deferred) before(method string) {
	if movesData(method) {
		d.restore()
	}
}

// after is called once each call's end was written: after the first, the
// warm-up starts, and the rest is scheduled. After the Init, GOMAXPROCS is
// restored at once, in the background: the host's next call is usually the
// first exec, a millisecond or more later (the host records the sandbox
// as running first), which then need not wait for the restore (about
// 0.5 ms on the benchmark VM).
func (d *deferred) after(method string) {
	d.first.Do(func() {
		go d.runSoon()
		time.AfterFunc(deferDelay, d.finish)
	})
	if method == methodInit {
		go d.restore()
	}
}

// runSoon does the warm-up, letting calls that are ready to run go first
// between its steps.
func (d *deferred) runSoon() {
	for _, step := range d.soon {
		runtime.Gosched()
		step()
	}
}

// beforeProcesses is called before the agent starts a sandbox process: it
// restores GOMAXPROCS first, so that the Go runtime has the Ps (and soon
// the threads) it will run with before any sandbox process can exist. A
// process may fill the sandbox's pids limit (a fork bomb): a restore after
// that asks the kernel for threads it refuses, and the Go runtime aborts
// when it cannot create a thread (TestForkBombStopsAtPidsLimit).
func (s *Server) beforeProcesses() {
	if s.later != nil {
		s.later.restore()
	}
}

// finish does the deferred work.
func (d *deferred) finish() {
	d.restore()
	markTrimBase()
}

// startedWithOneP says whether the agent runs with StartEnv's GOMAXPROCS.
var startedWithOneP = os.Getenv("GOMAXPROCS") == "1"

// sandboxEnv returns the agent's environment without what StartEnv added,
// as the default environment of the sandbox's processes.
func sandboxEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			out = append(out, kv)
		}
	}
	return out
}
