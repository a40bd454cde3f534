package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/agentwire"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Config is the agent's configuration, parsed by cmd/sbx-agent.
type Config struct {
	// StateDir holds SocketName, ExitFile and LogFile.
	StateDir string
	// LogMaxBytes is the rotation size of LogFile; 0 means DefaultLogMaxBytes.
	LogMaxBytes int64
	// MaxFileBytes bounds a file written through Write or Init; 0 is no bound.
	MaxFileBytes int64
	// OutputBufferBytes is how much recent output is kept per exec for
	// re-attaching; 0 means 1 MiB.
	OutputBufferBytes int
	// StopGrace is how long SIGTERM waits for an idle sandbox's processes
	// before SIGKILL, and for all of them when the agent ends the sandbox
	// at its deadline (backstop.go); 0 means 2s.
	StopGrace time.Duration
	// Conn, if set, is the host's connection made before the agent started
	// (StartPair); it is served first, besides the socket.
	Conn net.Conn
	// WorkloadTasks, if set, is the open tasks file of the workload cgroup
	// (workload.go); New takes it over.
	WorkloadTasks *os.File
}

// Bounds of the agent's bookkeeping.
const (
	maxRunningExecs = 1024
	maxEndedExecs   = 64
	endedRetention  = 10 * time.Minute
	// maxMessageBytes bounds one RPC message: a 1 MiB chunk plus framing.
	maxMessageBytes = 2 << 20
	// maxInitBytes bounds the Init request, whose files arrive whole.
	maxInitBytes = 64 << 20
)

// Server is the agent: PID 1 duties plus the RPC services.
type Server struct {
	cfg    Config
	reaper *reaper
	log    *logWriter
	execs  *processTable
	// stopping is closed when the agent was told to stop (SIGTERM).
	stopping chan struct{}
	stopOnce sync.Once

	trimMu sync.Mutex
	trim   *time.Timer

	// later is the work left out of the path to ready (start.go), set by
	// Handler.
	later *deferred

	// deadline ends the sandbox when its lifetime is long over and no
	// server stopped it (backstop.go); set by each Init.
	deadline deadlineTimer

	mu     sync.Mutex
	inited bool
	// provisional says the Init applied was empty (the image's defaults
	// only), and started that a process (the main command or an exec) was
	// started: until then a later Init replaces a provisional one (see
	// init in service_agent.go).
	provisional, started bool
	// expired says the deadline passed and the agent is ending the
	// sandbox: no process starts any more, and the main command's exit
	// is recorded with TimedOut.
	expired bool
	// startEnv is the agent's own environment without StartEnv: the base
	// of every Init.
	startEnv []string
	env      []string  // the sandbox's environment, after Init
	dir      string    // the default working dir
	ident    *identity // the default user, nil for the agent's own
	main     *process
	mainDone chan struct{} // closed once mainExit is set
	mainExit *sandbox.ExitStatus
}

// New prepares an agent with cfg; Run starts it.
func New(cfg Config) (*Server, error) {
	if cfg.StateDir == "" {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "agent state dir is empty")
	}
	if cfg.OutputBufferBytes <= 0 {
		cfg.OutputBufferBytes = 1 << 20
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 2 * time.Second
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create the state dir: %w", err)
	}
	l, err := openLog(cfg.StateDir, cfg.LogMaxBytes)
	if err != nil {
		return nil, fmt.Errorf("open the log: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		reaper:   newReaper(),
		log:      l,
		execs:    newProcessTable(maxRunningExecs, maxEndedExecs, endedRetention),
		stopping: make(chan struct{}),
		startEnv: sandboxEnv(os.Environ()),
		env:      sandboxEnv(os.Environ()),
		dir:      "/",
		mainDone: make(chan struct{}),
	}
	s.deadline.fire = s.expire
	if cfg.WorkloadTasks != nil {
		// Without it the agent makes spare threads (threads.go), and the
		// sandbox's processes have the room the host left for the agent
		// on top of their limit: a degraded sandbox rather than none.
		if w, err := startWorkload(cfg.WorkloadTasks); err != nil {
			fmt.Fprintf(os.Stderr, "sbx-agent: %v; making spare threads instead\n", err)
		} else {
			s.reaper.workload = w
		}
	}
	return s, nil
}

// wireServer returns the agent's protocol server (internal/agentwire),
// with the deferred work hooked in (start.go).
func (s *Server) wireServer() *agentwire.Server {
	srv := agentwire.NewServer(s.methods())
	s.later = newDeferred(s.warmSteps())
	srv.Before = s.later.before
	srv.After = s.later.after
	return srv
}

// Run serves on StateDir/SocketName and does the PID 1 duties until the
// agent is told to stop (SIGTERM), ctx ends or the sandbox's deadline
// passes (backstop.go, and Run returns ErrDeadline); then it ends every
// process.
func (s *Server) Run(ctx context.Context) error {
	if os.Getpid() != 1 {
		// Outside a sandbox (tests), adopt orphans as PID 1 would.
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	}
	// Not dumpable: sandbox root (same uid, no CAP_SYS_PTRACE) can then
	// neither ptrace the agent nor take its descriptors (pidfd_getfd,
	// /proc/1/fd), such as the listening socket the host trusts. Children
	// become dumpable again at execve.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", err)
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go s.reaper.run()
	defer s.reaper.close()

	sock := filepath.Join(s.cfg.StateDir, SocketName)
	_ = os.Remove(sock) // left by an agent that died
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	_ = os.Chmod(sock, 0o600)
	baseCtx, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	srv := s.wireServer()
	if s.cfg.Conn != nil {
		go srv.ServeConn(baseCtx, s.cfg.Conn)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(baseCtx, ln) }()

	var runErr error
	done := s.stopped()
loop:
	for {
		select {
		case sig := <-sigs:
			s.forward(sig.(syscall.Signal))
			if sig == syscall.SIGTERM {
				s.stop()
			}
		case <-done:
			break loop
		case <-ctx.Done():
			s.stop()
			ctx = context.Background() // ctx.Done no longer selects
		case err := <-serveErr:
			runErr = err
			break loop
		}
	}
	s.killAll()
	s.log.end()
	ln.Close()
	// Calls in flight get a moment to end (WaitMain answers now); streams
	// still open then are cut.
	sctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	srv.Shutdown(sctx)
	cancelBase()
	_ = os.Remove(sock)
	s.log.close()
	if errors.Is(runErr, net.ErrClosed) {
		runErr = nil
	}
	if _, fired := s.deadline.deadline(); fired && runErr == nil {
		runErr = ErrDeadline
	}
	return runErr
}

// stop marks the agent as stopping; idempotent.
func (s *Server) stop() { s.stopOnce.Do(func() { close(s.stopping) }) }

// stopped returns a channel closed when the agent may exit after a stop:
// once the main command (if any) has exited and the execs have ended or had
// StopGrace to do so.
func (s *Server) stopped() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		<-s.stopping
		s.mu.Lock()
		main := s.main
		s.mu.Unlock()
		if main != nil {
			<-s.mainDone
		}
		s.waitExecs(s.cfg.StopGrace)
		close(ch)
	}()
	return ch
}

// forward sends sig to the main command's and every exec's process group.
func (s *Server) forward(sig syscall.Signal) {
	for _, p := range s.groups() {
		if pid := p.getPID(); pid > 0 {
			_ = syscall.Kill(-pid, sig)
		}
	}
}

// groups returns the running processes: the main command and the execs.
func (s *Server) groups() []*process {
	var ps []*process
	s.mu.Lock()
	if s.main != nil && s.main.status() == nil {
		ps = append(ps, s.main)
	}
	s.mu.Unlock()
	for _, p := range s.execs.list() {
		if p.status() == nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// waitExecs waits up to grace for every exec to end.
func (s *Server) waitExecs(grace time.Duration) {
	deadline := time.After(grace)
	for _, p := range s.groups() {
		select {
		case <-p.done:
		case <-deadline:
			return
		}
	}
}

// killAll sends SIGKILL to every process group the agent started.
func (s *Server) killAll() { s.forward(syscall.SIGKILL) }

// trimSoon returns freed memory to the kernel a second after the last burst
// of work (a file transfer, an exec), so that an idle agent stays small; the
// Go scavenger alone takes minutes.
func (s *Server) trimSoon() {
	s.trimMu.Lock()
	defer s.trimMu.Unlock()
	if s.trim == nil {
		s.trim = time.AfterFunc(time.Second, trim)
		return
	}
	s.trim.Reset(time.Second)
}

// trim collects garbage and returns free memory to the kernel. Twice: the
// first collection only moves pooled buffers (such as file chunks) to the
// pools' victim caches, the second frees them.
//
// A trim runs only if the heap the runtime holds grew by trimMinGrowth
// since the last one (or since the agent was fully built, see
// markTrimBase): a small exec such as `echo hi` leaves a few KiB, not worth
// two full collections, which were most of a claimed pool sandbox's CPU
// when a host started sandboxes at 100/s (the benchmark's pool_rate: two
// thirds of the agents' CPU, 40 % of the host's, in collections and their
// sweeps), while file transfers leave MiBs.
func trim() {
	if !trimNeeded() {
		return
	}
	debug.FreeOSMemory()
	debug.FreeOSMemory()
	trimBase.Store(heapHeld())
}

// trimMinGrowth is how much the held heap must grow between trims.
const trimMinGrowth = 1 << 20

// trimBase is heapHeld after the last trim; 0 until markTrimBase or the
// first trim, which then always runs.
var trimBase atomic.Uint64

// markTrimBase records the held heap of an agent that has built all it
// needs as the base of the next trim.
func markTrimBase() { trimBase.CompareAndSwap(0, heapHeld()) }

// trimNeeded reports whether the held heap grew by trimMinGrowth since
// trimBase.
func trimNeeded() bool { return trimDue(heapHeld(), trimBase.Load()) }

// trimDue is trimNeeded's rule for a held heap of held bytes and a base.
func trimDue(held, base uint64) bool { return base == 0 || held >= base+trimMinGrowth }

// heapHeld is the heap memory the runtime holds and has not returned to
// the kernel: objects (live or garbage), free and unused spans.
func heapHeld() uint64 {
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	metrics.Read(s)
	var n uint64
	for _, v := range s {
		if v.Value.Kind() == metrics.KindUint64 {
			n += v.Value.Uint64()
		}
	}
	return n
}

// sandboxDefaults returns the env, working dir and user that processes get
// unless their request says otherwise.
func (s *Server) sandboxDefaults() ([]string, string, *identity) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.env, s.dir, s.ident
}
