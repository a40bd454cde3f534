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
	// readers counts the output streams still being read; the last one to
	// reach EOF closes drained.
	readers atomic.Int32
	drained chan struct{}
}

// devNull is /dev/null, opened once and kept: the stdin of every exec
// without Stdin, which saves an open and a close per exec.
var devNull = sync.OnceValues(func() (*os.File, error) { return os.Open(os.DevNull) })

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
	var childFiles []*os.File // closed in the agent once the child runs
	var outputs []struct {
		stream sandbox.Stream
		f      *os.File
	}
	fail := func(err error) error {
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
		outputs = append(outputs, struct {
			stream sandbox.Stream
			f      *os.File
		}{sandbox.Stdout, ptm})
		fd := pts.Fd()
		files = []uintptr{fd, fd, fd}
		sys.Setsid, sys.Setctty, sys.Ctty = true, true, 0
	} else {
		sys.Setpgid = true
		if spec.stdin {
			r, w, err := os.Pipe()
			if err != nil {
				return sandbox.Internal("create a stdin pipe: %w", err)
			}
			p.stdin = w
			childFiles = append(childFiles, r)
			files = append(files, r.Fd())
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
			r, w, err := os.Pipe()
			if err != nil {
				return fail(sandbox.Internal("create an output pipe: %w", err))
			}
			childFiles = append(childFiles, w)
			outputs = append(outputs, struct {
				stream sandbox.Stream
				f      *os.File
			}{s, r})
			files = append(files, w.Fd())
		}
		if spec.mergeOutput {
			files = append(files, files[1])
		}
	}
	// Set before the start: the child may exit, and be reaped, at once.
	p.drained = make(chan struct{})
	p.readers.Store(int32(len(outputs)))
	if len(outputs) == 0 {
		close(p.drained)
	}
	p.started = time.Now()
	pid, err := rp.start(argv0, spec.argv, &syscall.ProcAttr{Dir: spec.dir, Env: spec.env, Files: files, Sys: sys}, p.exited)
	if err != nil {
		return fail(startError(spec.argv[0], err))
	}
	p.mu.Lock()
	p.pid = pid
	p.mu.Unlock()
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
	defer func() {
		if p.readers.Add(-1) == 0 {
			close(p.drained)
		}
	}()
	if !tty {
		defer f.Close()
	}
	buf := make([]byte, readBufSize)
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
			return
		}
	}
}

// exited is the reaper's callback; it must not block.
func (p *process) exited(ws syscall.WaitStatus) {
	at := time.Now()
	go func() {
		p.mu.Lock()
		if p.timer != nil {
			p.timer.Stop()
		}
		p.mu.Unlock()
		if p.drained != nil {
			t := time.NewTimer(drainWait)
			select {
			case <-p.drained:
			case <-t.C:
			}
			t.Stop()
		}
		st := exitStatus(ws, at)
		st.TimedOut = p.timedOut.Load()
		p.mu.Lock()
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
	}()
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
