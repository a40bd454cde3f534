package sbx

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// Result is how a process ended, with its output.
type Result struct {
	// Stdout and Stderr hold the output that was not read from
	// Process.Stdout and Process.Stderr: all of it when nobody read them.
	Stdout, Stderr []byte
	// ExitCode is the exit code, or 128+signal when a signal killed it.
	ExitCode int
	// Signal names the signal that killed the process ("SIGKILL"), if any.
	Signal string
	// TimedOut is set when the Timeout option ended the process.
	TimedOut bool
	// OOMKilled is set when the kernel's OOM killer ended it.
	OOMKilled bool
	// Truncated is set when output beyond the output limit was dropped.
	Truncated bool
}

// Process is a process running in a sandbox, started by Exec. Its output
// is received in the background as it arrives, so Stdout and Stderr can be
// read in any order (or not at all) without blocking each other.
type Process struct {
	// Stdout streams the process's standard output (the terminal's output
	// under TTY); it reads EOF after the process exits.
	Stdout io.Reader
	// Stderr streams the standard error; it is empty under TTY.
	Stderr io.Reader
	// Stdin writes to the process's standard input; Close sends EOF. It is
	// nil unless Exec had the Stdin or TTY option.
	Stdin io.WriteCloser

	sb      *Sandbox
	ctx     context.Context
	id      string
	pid     int
	command []string
	check   bool

	stdout, stderr *pipe
	done           chan struct{}
	exit           *sbxv1.ExecExit
	err            error
}

// Exec runs argv in the sandbox, waiting first until the sandbox runs. It
// returns once the process has started. ctx bounds the whole process
// stream: cancelling it stops receiving output (the process itself keeps
// running; use Signal to end it).
func (s *Sandbox) Exec(ctx context.Context, argv []string, opts ...ExecOption) (*Process, error) {
	if len(argv) == 0 {
		return nil, errorf(ErrInvalidArgument, "INVALID_ARGUMENT", "exec needs a command: give at least one argument")
	}
	var cfg execConfig
	for _, o := range opts {
		o.applyExec(&cfg)
	}
	// No Wait first: the server holds an exec for a sandbox that is still
	// starting until it runs, which saves "create, then exec" a round trip.
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	req := &sbxv1.ExecRequest{
		SandboxId:        s.ID(),
		Command:          argv,
		Env:              cfg.env,
		WorkingDir:       cfg.workingDir,
		User:             cfg.user,
		Stdin:            cfg.stdin || cfg.tty,
		Tty:              cfg.tty,
		Rows:             uint32(cfg.rows),
		Cols:             uint32(cfg.cols),
		Tag:              cfg.tag,
		OutputLimitBytes: cfg.outputLimit,
	}
	if cfg.timeout > 0 {
		req.TimeoutSeconds = int32((cfg.timeout + time.Second - 1) / time.Second)
	}
	p, err := s.exec(ctx, req, argv, cfg.check)
	if errors.Is(err, ErrFailedPrecondition) && ReasonOf(err) == "SANDBOX_NOT_RUNNING" {
		// Not running: say why as Wait does, or, from a server that does
		// not wait for a starting sandbox, try again once it runs.
		if werr := s.Wait(ctx); werr != nil {
			return nil, werr
		}
		p, err = s.exec(ctx, req, argv, cfg.check)
	}
	if err != nil {
		return nil, err
	}
	if req.Stdin {
		p.Stdin = &stdinWriter{p: p}
	}
	return p, nil
}

// exec sends req and returns the process once it started.
func (s *Sandbox) exec(ctx context.Context, req *sbxv1.ExecRequest, argv []string, check bool) (*Process, error) {
	stream, err := s.c.sandboxes.Exec(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, s.c.fromWire(err)
	}
	return s.startProcess(ctx, stream, argv, check)
}

// Attach reconnects to a process started earlier by Exec, by its exec id:
// the output the sandbox still holds is replayed, then followed.
func (s *Sandbox) Attach(ctx context.Context, execID string, opts ...ExecOption) (*Process, error) {
	var cfg execConfig
	for _, o := range opts {
		o.applyExec(&cfg)
	}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	stream, err := s.c.sandboxes.AttachExec(ctx, connect.NewRequest(&sbxv1.AttachExecRequest{SandboxId: s.ID(), ExecId: execID}))
	if err != nil {
		return nil, s.c.fromWire(err)
	}
	p, err := s.startProcess(ctx, stream, nil, cfg.check)
	if err != nil {
		return nil, err
	}
	p.Stdin = &stdinWriter{p: p}
	return p, nil
}

// startProcess reads the started event, then receives the rest in the
// background.
func (s *Sandbox) startProcess(ctx context.Context, stream *connect.ServerStreamForClient[sbxv1.ExecEvent], argv []string, check bool) (*Process, error) {
	if !stream.Receive() {
		err := stream.Err()
		stream.Close()
		if err == nil {
			err = errorf(ErrInternal, "INTERNAL", "the server ended the exec stream before the process started")
		}
		return nil, s.c.fromWire(err)
	}
	started := stream.Msg().GetStarted()
	if started == nil {
		stream.Close()
		return nil, errorf(ErrInternal, "INTERNAL", "the server's exec stream did not begin with a started event")
	}
	p := &Process{
		sb: s, ctx: ctx, id: started.GetExecId(), pid: int(started.GetPid()), command: argv, check: check,
		stdout: newPipe(), stderr: newPipe(), done: make(chan struct{}),
	}
	p.Stdout, p.Stderr = p.stdout, p.stderr
	go p.receive(stream)
	return p, nil
}

// receive moves the stream's events into the pipes. The exit event ends
// the process for its caller at once (Wait returns); the stream is then
// read to its end, so that the HTTP/1.1 connection under it goes back to
// the pool instead of being closed: a new TCP connection for every exec
// cost more than the rest of the client's work.
func (p *Process) receive(stream *connect.ServerStreamForClient[sbxv1.ExecEvent]) {
	defer stream.Close()
	for stream.Receive() {
		if p.exit != nil {
			continue // nothing follows the exit event but the stream's end
		}
		ev := stream.Msg()
		switch e := ev.GetEvent().(type) {
		case *sbxv1.ExecEvent_Stdout:
			p.stdout.write(e.Stdout)
		case *sbxv1.ExecEvent_Stderr:
			p.stderr.write(e.Stderr)
		case *sbxv1.ExecEvent_Exit:
			p.exit = e.Exit
			p.finish(nil)
		}
	}
	if p.exit == nil {
		err := stream.Err()
		if err == nil {
			err = errorf(ErrUnavailable, "EXEC_STREAM_ENDED", "the exec stream of process %s ended before the process exited: reattach with Sandbox.Attach", p.id)
		}
		p.finish(p.sb.c.fromWire(err))
	}
}

// finish ends the output pipes and marks the process done, once.
func (p *Process) finish(err error) {
	p.err = err
	p.stdout.close(err)
	p.stderr.close(err)
	close(p.done)
}

// ID returns the exec id, for Attach.
func (p *Process) ID() string { return p.id }

// PID returns the process id inside the sandbox.
func (p *Process) PID() int { return p.pid }

// Done is closed once the process has exited (or its stream failed).
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits until the process exits and returns its exit code. Under the
// Check option a non-zero exit returns an *ExitError.
func (p *Process) Wait() (int, error) {
	<-p.done
	if p.err != nil {
		return 0, p.err
	}
	code := int(p.exit.GetCode())
	if p.check && code != 0 {
		return code, &ExitError{Command: p.command, Result: p.result()}
	}
	return code, nil
}

// Result waits until the process exits and returns its Result, with the
// output not yet read from Stdout and Stderr. Under the Check option a
// non-zero exit returns the Result and an *ExitError carrying it.
func (p *Process) Result() (*Result, error) {
	<-p.done
	if p.err != nil {
		return nil, p.err
	}
	r := p.result()
	if p.check && r.ExitCode != 0 {
		return r, &ExitError{Command: p.command, Result: r}
	}
	return r, nil
}

func (p *Process) result() *Result {
	return &Result{
		Stdout:    p.stdout.drain(),
		Stderr:    p.stderr.drain(),
		ExitCode:  int(p.exit.GetCode()),
		Signal:    p.exit.GetSignal(),
		TimedOut:  p.exit.GetTimedOut(),
		OOMKilled: p.exit.GetOomKilled(),
		Truncated: p.exit.GetTruncated(),
	}
}

// Signal sends a signal ("SIGTERM", "TERM" or "15") to the process's group.
func (p *Process) Signal(ctx context.Context, signal string) error {
	_, err := p.sb.c.sandboxes.SignalExec(ctx, connect.NewRequest(&sbxv1.SignalExecRequest{
		SandboxId: p.sb.ID(), ExecId: p.id, Signal: signal,
	}))
	return p.sb.c.fromWire(err)
}

// Resize sets the window size of the process's terminal (TTY option).
func (p *Process) Resize(ctx context.Context, rows, cols uint16) error {
	_, err := p.sb.c.sandboxes.ResizeExec(ctx, connect.NewRequest(&sbxv1.ResizeExecRequest{
		SandboxId: p.sb.ID(), ExecId: p.id, Rows: uint32(rows), Cols: uint32(cols),
	}))
	return p.sb.c.fromWire(err)
}

// maxStdinChunk is the server's limit per WriteStdin call.
const maxStdinChunk = 1 << 20

// stdinWriter sends writes as WriteStdin calls and Close as CloseStdin.
type stdinWriter struct {
	p      *Process
	mu     sync.Mutex
	closed bool
}

func (w *stdinWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, errorf(ErrFailedPrecondition, "STDIN_CLOSED", "stdin of process %s is closed", w.p.id)
	}
	n := 0
	for len(b) > 0 {
		chunk := b[:min(len(b), maxStdinChunk)]
		_, err := w.p.sb.c.sandboxes.WriteStdin(w.p.ctx, connect.NewRequest(&sbxv1.WriteStdinRequest{
			SandboxId: w.p.sb.ID(), ExecId: w.p.id, Data: chunk,
		}))
		if err != nil {
			return n, w.p.sb.c.fromWire(err)
		}
		n += len(chunk)
		b = b[len(chunk):]
	}
	return n, nil
}

func (w *stdinWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	_, err := w.p.sb.c.sandboxes.CloseStdin(w.p.ctx, connect.NewRequest(&sbxv1.CloseStdinRequest{
		SandboxId: w.p.sb.ID(), ExecId: w.p.id,
	}))
	return w.p.sb.c.fromWire(err)
}

// pipe is an unbounded in-memory pipe: the receiver never blocks on a slow
// reader (so one unread stream cannot stall the other); its size is bounded
// by the server's output limit.
type pipe struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	closed bool
	err    error
}

func newPipe() *pipe {
	p := &pipe{}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *pipe) write(b []byte) {
	p.mu.Lock()
	p.buf = append(p.buf, b...)
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *pipe) close(err error) {
	p.mu.Lock()
	p.closed, p.err = true, err
	p.mu.Unlock()
	p.cond.Broadcast()
}

// Read returns buffered output, blocking until some arrives or the stream
// ends (io.EOF, or the stream's error).
func (p *pipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && !p.closed {
		p.cond.Wait()
	}
	if len(p.buf) == 0 {
		if p.err != nil {
			return 0, p.err
		}
		return 0, io.EOF
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	if len(p.buf) == 0 {
		p.buf = nil // let the backing array go
	}
	return n, nil
}

// drain takes what is buffered.
func (p *pipe) drain() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.buf
	p.buf = nil
	if b == nil {
		b = []byte{}
	}
	return b
}
