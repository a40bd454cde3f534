package agent

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// drainWait is how long a process's exit waits for its output pipes to close.
// A background child that keeps them open would otherwise hold the exit
// event back forever.
const drainWait = 2 * time.Second

// readBufSize is the size of the read buffer of each output stream of a
// running process (none are held at rest).
const readBufSize = 32 << 10

// procSpec is a validated request to start a process.
type procSpec struct {
	argv       []string
	env        []string
	dir        string
	ident      *identity
	stdin      bool
	tty        bool
	rows, cols uint16
	timeout    time.Duration
	// mergeOutput gives stdout and stderr one pipe, which keeps their
	// order (the main command's log interleaves them anyway).
	mergeOutput bool
}

// process is one child the agent started: an exec, or the main command.
type process struct {
	id      string
	tag     string
	argv    []string
	tty     bool
	started time.Time
	pid     int // also its process group id; under mu (set after the fork)

	// Output goes to ring (execs) or to sink (the main command).
	ring *ring
	sink io.Writer
	stop <-chan struct{} // the agent is shutting down

	mu       sync.Mutex
	stdin    *os.File // pipe writer or PTY master; nil once closed
	ptm      *os.File // PTY master, for resize
	exit     *sandbox.ExitStatus
	done     chan struct{} // closed once exit is set
	timedOut atomic.Bool
	timer    *time.Timer
	onDone   func(*process)
	// pending counts what the exit event still waits for: each output
	// stream until its EOF, and the exit status from the reaper. Whoever
	// brings it to zero finishes the process, on its own goroutine, so an
	// exit costs no goroutine of its own.
	pending  atomic.Int32
	ws       syscall.WaitStatus // set by exited before its pending.Add(-1)
	exitAt   time.Time
	finished atomic.Bool
	drain    *time.Timer // bounds the wait for the outputs after the exit
}

// devNull is /dev/null, opened once and kept: the stdin of every exec
// without Stdin, which saves an open and a close per exec.
var devNull = sync.OnceValues(func() (*os.File, error) { return os.Open(os.DevNull) })

// readBufs holds the output read buffers of running processes, so that an
// exec does not allocate (and the GC does not sweep) 32 KiB per stream.
var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// output is one output stream of a process being started: the agent's read
// end and the stream it carries.
type output struct {
	stream sandbox.Stream
	f      *os.File
}

// spawn starts p as described by spec through the reaper.
func spawn(rp *reaper, p *process, spec procSpec) error {
	argv0, err := lookPath(spec.argv[0], spec.env, spec.dir)
	if err != nil {
		return err
	}
	p.done = make(chan struct{})
	sys := &syscall.SysProcAttr{}
	if spec.ident != nil {
		sys.Credential = spec.ident.cred
	}
	var childFDs []int        // the child's ends, closed in the agent once it runs
	var childFiles []*os.File // the same for a PTY's slave
	var outputs []output
	fail := func(err error) error {
		for _, fd := range childFDs {
			syscall.Close(fd)
		}
		for _, f := range childFiles {
			f.Close()
		}
		for _, o := range outputs {
			o.f.Close()
		}
		if p.stdin != nil {
			p.stdin.Close()
		}
		return err
	}
	var files []uintptr
	if spec.tty {
		ptm, pts, err := pty.Open()
		if err != nil {
			return sandbox.Internal("open a PTY: %w", err)
		}
		if spec.rows > 0 && spec.cols > 0 {
			_ = pty.Setsize(ptm, &pty.Winsize{Rows: spec.rows, Cols: spec.cols})
		}
		childFiles = append(childFiles, pts)
		p.ptm, p.stdin = ptm, ptm
		outputs = append(outputs, output{sandbox.Stdout, ptm})
		fd := pts.Fd()
		files = []uintptr{fd, fd, fd}
		sys.Setsid, sys.Setctty, sys.Ctty = true, true, 0
	} else {
		sys.Setpgid = true
		if spec.stdin {
			w, r, err := pipe(false)
			if err != nil {
				return sandbox.Internal("create a stdin pipe: %w", err)
			}
			p.stdin = w
			childFDs = append(childFDs, r)
			files = append(files, uintptr(r))
		} else {
			null, err := devNull()
			if err != nil {
				return sandbox.Internal("open %s: %w", os.DevNull, err)
			}
			files = append(files, null.Fd())
		}
		streams := []sandbox.Stream{sandbox.Stdout, sandbox.Stderr}
		if spec.mergeOutput {
			streams = streams[:1]
		}
		for _, s := range streams {
			r, w, err := pipe(true)
			if err != nil {
				return fail(sandbox.Internal("create an output pipe: %w", err))
			}
			childFDs = append(childFDs, w)
			outputs = append(outputs, output{s, r})
			files = append(files, uintptr(w))
		}
		if spec.mergeOutput {
			files = append(files, files[1])
		}
	}
	// Set before the start: the child may exit, and be reaped, at once.
	p.pending.Store(int32(len(outputs)) + 1)
	p.started = time.Now()
	pid, err := rp.start(argv0, spec.argv, &syscall.ProcAttr{Dir: spec.dir, Env: spec.env, Files: files, Sys: sys}, p.exited)
	if err != nil {
		return fail(startError(spec.argv[0], err))
	}
	p.mu.Lock()
	p.pid = pid
	p.mu.Unlock()
	for _, fd := range childFDs {
		syscall.Close(fd)
	}
	for _, f := range childFiles {
		f.Close()
	}
	for _, o := range outputs {
		go p.copyOutput(o.stream, o.f, spec.tty)
	}
	if spec.timeout > 0 {
		p.mu.Lock()
		p.timer = time.AfterFunc(spec.timeout, func() {
			p.timedOut.Store(true)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		})
		p.mu.Unlock()
	}
	return nil
}

// pipe returns a pipe whose agent end is an *os.File on the runtime's
// poller (so reads and writes park a goroutine, not a thread, and take
// deadlines) and whose child end is a plain blocking descriptor. os.Pipe
// would put both ends on the poller and switch the child's back to
// blocking mode for Fd: six more syscalls per pipe, each costly on a
// paravirtualized host. agentReads says which end is the agent's.
func pipe(agentReads bool) (agent *os.File, child int, err error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return nil, -1, err
	}
	a, c := fds[0], fds[1]
	if !agentReads {
		a, c = c, a
	}
	// O_NONBLOCK belongs to each end's open file description: clear it on
	// the child's, which a program expects to block.
	if _, err := unix.FcntlInt(uintptr(c), unix.F_SETFL, 0); err != nil {
		syscall.Close(a)
		syscall.Close(c)
		return nil, -1, err
	}
	return os.NewFile(uintptr(a), "|pipe"), c, nil
}

func startError(cmd string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return sandbox.NotFound(sandbox.ReasonCommandNotFound, "command %q or its working directory does not exist in the sandbox", cmd)
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		return sandbox.Errorf(sandbox.ErrPermissionDenied, sandbox.ReasonFilePermission, "command %q cannot be executed in the sandbox: its user may not run it or enter the working dir: %w", cmd, err)
	case errors.Is(err, syscall.ENOEXEC) || errors.Is(err, syscall.ENOTDIR):
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "command %q cannot be executed in the sandbox: %w", cmd, err)
	}
	return sandbox.Internal("start %q: %w", cmd, err)
}

// copyOutput moves one output stream into the ring or the sink until EOF
// (or EIO: a PTY whose other side is closed).
func (p *process) copyOutput(stream sandbox.Stream, f *os.File, tty bool) {
	bp := readBufs.Get().(*[]byte)
	buf := *bp
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if p.ring != nil {
				p.ring.append(stream, append([]byte(nil), buf[:n]...), p.stop)
			} else if p.sink != nil {
				_, _ = p.sink.Write(buf[:n])
			}
		}
		if err != nil {
			break
		}
	}
	readBufs.Put(bp)
	if !tty {
		f.Close()
	}
	p.release()
}

// exited is the reaper's callback; it must not block.
func (p *process) exited(ws syscall.WaitStatus) {
	p.ws, p.exitAt = ws, time.Now()
	if p.pending.Add(-1) == 0 {
		p.finishAsync()
		return
	}
	// An output is still open: normally its EOF is on its way, but a
	// background child that keeps it open must not hold the exit back
	// forever.
	p.mu.Lock()
	if !p.finished.Load() {
		p.drain = time.AfterFunc(drainWait, p.finish)
	}
	p.mu.Unlock()
}

// release is called once by each output reader at its EOF.
func (p *process) release() {
	if p.pending.Add(-1) == 0 {
		p.finish()
	}
}

// finishAsync finishes p from the reaper's goroutine, which must not block:
// the main command's onDone writes the exit file, so it gets a goroutine.
func (p *process) finishAsync() {
	if p.ring == nil {
		go p.finish()
		return
	}
	p.finish()
}

// finish records the exit status and ends p's stream, once: when the exit
// status and every output's EOF are in, or drainWait after the exit.
func (p *process) finish() {
	if p.finished.Swap(true) {
		return
	}
	st := exitStatus(p.ws, p.exitAt)
	st.TimedOut = p.timedOut.Load()
	p.mu.Lock()
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.drain != nil {
		p.drain.Stop()
	}
	p.exit = &st
	if p.stdin != nil && p.stdin != p.ptm {
		p.stdin.Close()
	}
	p.stdin = nil
	if p.ptm != nil {
		p.ptm.Close() // also ends a reader still blocked on it
	}
	p.mu.Unlock()
	if p.ring != nil {
		p.ring.close()
	}
	close(p.done)
	if p.onDone != nil {
		p.onDone(p)
	}
}

// exitStatus converts a wait status.
func exitStatus(ws syscall.WaitStatus, at time.Time) sandbox.ExitStatus {
	if ws.Signaled() {
		return sandbox.ExitStatus{Code: 128 + int(ws.Signal()), Signal: unix.SignalName(ws.Signal()), At: at}
	}
	return sandbox.ExitStatus{Code: ws.ExitStatus(), At: at}
}

// getPID returns p's pid, which is also its process group id.
func (p *process) getPID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// status returns p's exit status, or nil while it runs.
func (p *process) status() *sandbox.ExitStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit
}

// signal sends sig to p's process group.
func (p *process) signal(sig syscall.Signal) error {
	if p.status() != nil {
		return sandbox.FailedPrecondition(sandbox.ReasonProcessExited, "process %s has exited; it takes no signals", p.id)
	}
	pid := p.getPID()
	if pid <= 0 { // kill(0) would signal the agent's own group
		return sandbox.FailedPrecondition(sandbox.ReasonProcessNotFound, "process %s is still starting; retry", p.id)
	}
	if err := syscall.Kill(-pid, sig); err != nil && err != syscall.ESRCH {
		return sandbox.Internal("signal process %s: %w", p.id, err)
	}
	return nil
}

// lookPath finds file in the PATH of env, as execvp would inside the sandbox.
func lookPath(file string, env []string, dir string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		cand := filepath.Join(d, file)
		if !filepath.IsAbs(cand) {
			cand = filepath.Join(dir, cand)
		}
		if fi, err := os.Stat(cand); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return cand, nil
		}
	}
	return "", sandbox.NotFound(sandbox.ReasonCommandNotFound, "command %q not found in the sandbox's PATH %q; give its absolute path or install it", file, path)
}
