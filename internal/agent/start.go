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
// (GOMAXPROCS=1). Each P of the Go runtime gets its own allocation caches,
// and each runnable P its own thread, whose fresh pages the kernel must
// fault in one by one, which is expensive on a VM (tens of µs a page on
// the benchmark machine); and with a second P every goroutine woken by
// the poller wakes a second thread to look for work, which doubled the
// context switches of an exec (`BenchmarkAgentClaimedLife`). The agent
// keeps one P for processes and RPCs; only a call that moves file data
// restores the default (runtime.SetDefaultGOMAXPROCS, which follows the
// sandbox's CPU limit), and only before the first sandbox process (see
// deferred). No process it starts sees the variable.
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

// deferred is the work the agent leaves out of its path to ready:
//   - soon (the warm-up, warm.go): what a fresh sandbox's first exec needs,
//     started once the first Init's answer is out, while the host does its
//     own bookkeeping and the caller learns that the sandbox runs (2 to 3
//     ms on the benchmark machine). Started after the first answer
//     instead (the Ping the host waits for), it ran into the Init, which
//     the host sends less than a millisecond later, and the agent has one
//     P: the Init took 1.7 to 1.9 ms instead of 0.6 to 0.8, and the first
//     output came 20 to 22 ms after the Ping's answer instead of 17 to 18
//     (BenchmarkAgentFirstExec, 4 interleaved rounds of 40);
//   - later, deferDelay after the first answer: the trim base
//     (markTrimBase).
//
// It also owns the agent's one P (see StartEnv): a call that moves file
// data restores the default GOMAXPROCS first, unless a sandbox process was
// ever started (Server.beforeProcesses seals it). A process may fill the
// sandbox's pids limit (a fork bomb): a restore after that asks the kernel
// for threads it refuses, and the Go runtime aborts when it cannot create
// a thread (TestForkBombStopsAtPidsLimit). With one P the agent needs
// fewest threads.
type deferred struct {
	soon  []func()
	first sync.Once
	warm  sync.Once
	// procs restores the default GOMAXPROCS; tests count it instead.
	procs func()

	mu sync.Mutex
	// settled: GOMAXPROCS was restored, or may no longer be (sealed).
	settled bool
}

// deferDelay is how long after its first answer the agent does the rest:
// past a fresh sandbox's Init and first exec (about 10 ms after the first
// answer when sbx serve creates a sandbox and execs at once), so that the
// work does not land on them, and well before an idle agent (a warm
// pool's) is claimed.
const deferDelay = 30 * time.Millisecond

func newDeferred(soon []func()) *deferred {
	return &deferred{soon: soon, procs: func() {
		if startedWithOneP {
			runtime.SetDefaultGOMAXPROCS()
		}
	}}
}

// restore restores the default GOMAXPROCS, once, unless sealed.
func (d *deferred) restore() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.settled {
		d.settled = true
		d.procs()
	}
}

// seal keeps GOMAXPROCS as it is from now on.
func (d *deferred) seal() {
	d.mu.Lock()
	d.settled = true
	d.mu.Unlock()
}

// before is called before each call's handler: a call that moves file
// data restores GOMAXPROCS first.
func (d *deferred) before(method string) {
	if movesData(method) {
		d.restore()
	}
}

// after is called once each call's end was written: after the first, the
// rest is scheduled; after the first Init, the warm-up starts.
func (d *deferred) after(method string) {
	d.first.Do(func() { time.AfterFunc(deferDelay, d.finish) })
	if method == methodInit {
		d.warm.Do(func() { go d.runSoon() })
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

// beforeProcesses is called before the agent starts a sandbox process:
// from then on GOMAXPROCS stays as it is (see deferred), so that the Go
// runtime never asks for more threads because of it once a sandbox
// process could have filled the pids limit, and the spare threads
// (threads.go) exist.
func (s *Server) beforeProcesses() {
	if s.later != nil {
		s.later.seal()
	}
	// Usually done already by the warm-up (it waits for it otherwise).
	if !s.hasWorkload() {
		makeSpareThreads()
	}
}

// finish does the deferred work.
func (d *deferred) finish() {
	markTrimBase()
	niceSysmon()
}

// sysmonNice is the nice value of the agent's sysmon thread.
const sysmonNice = 19

// niceSysmon gives the Go runtime's monitor thread (sysmon) the lowest CPU
// priority. While any P of a Go process is busy, sysmon wakes every 20 µs
// (a context switch each); when hundreds of agents work at once (a burst
// of claims from a warm pool, each with its first exec), every agent's
// goroutine waits for a CPU with its P busy, so every sysmon polls, and
// those wake-ups were the largest part of the agents' CPU (the pool_rate
// scenario: 6–8 ms of agent CPU per claimed sandbox, of 13–20). At nice 19
// sysmon still runs whenever a CPU is free, so an idle host is unchanged;
// on a busy one it runs less often, which costs the agent at most a later
// preemption of a long goroutine or hand-off of a P blocked in a syscall,
// both rare in an agent that mostly waits.
//
// sysmon is the first thread the Go runtime starts (runtime.main starts it
// before anything else), so it has the lowest thread id after the main
// thread's. A failure changes nothing but the agent's speed.
func niceSysmon() {
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return
	}
	self, sysmon := unix.Getpid(), 0
	for _, e := range entries {
		var tid int
		if _, err := fmt.Sscan(e.Name(), &tid); err == nil && tid != self && (sysmon == 0 || tid < sysmon) {
			sysmon = tid
		}
	}
	if sysmon > 0 {
		_ = unix.Setpriority(unix.PRIO_PROCESS, sysmon, sysmonNice)
	}
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
