package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
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
func (c *Client) UseConn(conn net.Conn) (closeUnused func()) {
	var mu sync.Mutex
	dial := c.transport.DialContext
	take := func() net.Conn {
		mu.Lock()
		defer mu.Unlock()
		first := conn
		conn = nil
		return first
	}
	c.transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if first := take(); first != nil {
			return first, nil
		}
		return dial(ctx, network, addr)
	}
	return func() {
		if first := take(); first != nil {
			first.Close()
		}
	}
}

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

// firstListener returns first from Accept once, then what ln accepts; it is
// how the agent serves the host's pre-made connection and its socket with
// one http.Server.
type firstListener struct {
	net.Listener
	mu    sync.Mutex
	first net.Conn
}

func (l *firstListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.first
	l.first = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	return l.Listener.Accept()
}

func (l *firstListener) Close() error {
	l.mu.Lock()
	c := l.first
	l.first = nil
	l.mu.Unlock()
	if c != nil {
		return errors.Join(c.Close(), l.Listener.Close())
	}
	return l.Listener.Close()
}

// deferred is the work the agent leaves out of its path to ready: the
// handlers of the services the host's first request (a Ping) does not use,
// built on their first request, and the default GOMAXPROCS (see StartEnv),
// restored before the first request that moves data. Building the handlers
// of all services (18 procedures, each with its protocols and codecs) cost
// the starting agent 25 to 40 page faults, about a millisecond of CPU on
// the benchmark machine. Whatever no request needed yet is done deferDelay
// after the first answer, so that an agent left idle (a warm pool's) has
// it all done before its first exec.
type deferred struct {
	lazy    []*lazyHandler
	restore func()
	once    sync.Once
}

// deferDelay is long enough for a fresh sandbox's first requests (an Init,
// an exec) to arrive and build what they need without contention.
const deferDelay = 10 * time.Millisecond

func newDeferred(lazy ...*lazyHandler) *deferred {
	return &deferred{lazy: lazy, restore: sync.OnceFunc(func() {
		if startedWithOneP {
			runtime.SetDefaultGOMAXPROCS()
		}
	})}
}

// handler returns next with the deferred work hooked in; requests whose
// path has prefix (the agent service's) do not restore GOMAXPROCS.
func (d *deferred) handler(prefix string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, prefix) {
			d.restore()
		}
		next.ServeHTTP(w, r)
		d.once.Do(func() { time.AfterFunc(deferDelay, d.finish) })
	})
}

// finish does whatever deferred work is left.
func (d *deferred) finish() {
	d.restore()
	for _, l := range d.lazy {
		l.get()
	}
	markTrimBase()
}

// lazyHandler is a Connect service's handler, built on first use.
type lazyHandler struct {
	path  string
	once  sync.Once
	build func() (string, http.Handler)
	h     http.Handler
}

// lazyService returns the lazy handler of the Connect service name, built
// by build, which must return the handler of that service.
func lazyService(name string, build func() (string, http.Handler)) *lazyHandler {
	return &lazyHandler{path: "/" + name + "/", build: build}
}

func (l *lazyHandler) get() http.Handler {
	l.once.Do(func() {
		path, h := l.build()
		if path != l.path {
			panic(fmt.Sprintf("agent: the handler of %s serves %s", l.path, path))
		}
		l.h = h
	})
	return l.h
}

func (l *lazyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) { l.get().ServeHTTP(w, r) }

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
