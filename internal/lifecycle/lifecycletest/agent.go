package lifecycletest

import (
	"bytes"
	"context"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Agent is the fake runtime's sandbox.Agent. Exec understands a few
// commands: echo ARGS, fail (stderr and exit 1), exit N, cat (stdin to
// stdout), spew N (N bytes of stdout), sleep (until signalled); anything
// else is COMMAND_NOT_FOUND. Files live in a map.
type Agent struct {
	sb *fakeSandbox
}

var _ sandbox.Agent = (*Agent)(nil)

type fakeFile struct {
	data []byte
	mode os.FileMode
	dir  bool
}

// proc is one fake process: its events so far, for any number of readers.
type proc struct {
	id      string
	mu      sync.Mutex
	events  []sandbox.ExecEvent
	changed chan struct{} // closed and replaced on every new event
	stdin   chan []byte   // nil data means closed
	signal  chan string
}

func (p *proc) emit(ev sandbox.ExecEvent) {
	p.mu.Lock()
	p.events = append(p.events, ev)
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

type procStream struct {
	p   *proc
	ctx context.Context
	i   int
}

func (s *procStream) ID() string   { return s.p.id }
func (s *procStream) Close() error { return nil }

func (s *procStream) Recv() (sandbox.ExecEvent, error) {
	for {
		s.p.mu.Lock()
		if s.i < len(s.p.events) {
			ev := s.p.events[s.i]
			s.i++
			s.p.mu.Unlock()
			return ev, nil
		}
		if s.i > 0 && s.p.events[s.i-1].Kind == sandbox.EventExit {
			s.p.mu.Unlock()
			return sandbox.ExecEvent{}, io.EOF
		}
		ch := s.p.changed
		s.p.mu.Unlock()
		select {
		case <-ch:
		case <-s.ctx.Done():
			return sandbox.ExecEvent{}, s.ctx.Err()
		}
	}
}

// Exec implements sandbox.Agent.
func (a *Agent) Exec(ctx context.Context, spec sandbox.ExecSpec) (sandbox.Process, error) {
	if len(spec.Command) == 0 {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "empty command")
	}
	switch spec.Command[0] {
	case "echo", "fail", "exit", "cat", "spew", "sleep":
	default:
		return nil, sandbox.NotFound(sandbox.ReasonCommandNotFound, "%q: command not found", spec.Command[0])
	}
	a.sb.mu.Lock()
	a.sb.next++
	p := &proc{id: "ex-" + strconv.Itoa(a.sb.next), changed: make(chan struct{}),
		stdin: make(chan []byte, 64), signal: make(chan string, 4)}
	a.sb.procs[p.id] = p
	a.sb.mu.Unlock()
	p.emit(sandbox.ExecEvent{Kind: sandbox.EventStarted, ExecID: p.id, PID: 100 + a.sb.next})
	go run(p, spec)
	return &procStream{p: p, ctx: ctx}, nil
}

func run(p *proc, spec sandbox.ExecSpec) {
	out := func(s sandbox.Stream, b []byte) {
		p.emit(sandbox.ExecEvent{Kind: sandbox.EventOutput, Stream: s, Data: b})
	}
	exit := sandbox.ExitStatus{}
	args := spec.Command[1:]
	switch spec.Command[0] {
	case "echo":
		out(sandbox.Stdout, []byte(strings.Join(args, " ")+"\n"))
	case "fail":
		out(sandbox.Stderr, []byte("failed\n"))
		exit.Code = 1
	case "exit":
		if len(args) > 0 {
			exit.Code, _ = strconv.Atoi(args[0])
		}
	case "cat":
		for spec.Stdin {
			select {
			case b := <-p.stdin:
				if b == nil {
					spec.Stdin = false
					continue
				}
				out(sandbox.Stdout, b)
			case sig := <-p.signal:
				exit = sandbox.ExitStatus{Code: 128 + 15, Signal: sig}
				spec.Stdin = false
			}
		}
	case "spew":
		n := 0
		if len(args) > 0 {
			n, _ = strconv.Atoi(args[0])
		}
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for n > 0 {
			c := min(n, len(chunk))
			out(sandbox.Stdout, chunk[:c])
			n -= c
		}
	case "sleep":
		exit = sandbox.ExitStatus{Code: 128 + 15, Signal: <-p.signal}
	}
	exit.At = time.Now()
	p.emit(sandbox.ExecEvent{Kind: sandbox.EventExit, Exit: &exit})
}

func (a *Agent) proc(id string) (*proc, error) {
	a.sb.mu.Lock()
	defer a.sb.mu.Unlock()
	p, ok := a.sb.procs[id]
	if !ok {
		return nil, sandbox.NotFound(sandbox.ReasonProcessNotFound, "process %q not found", id)
	}
	return p, nil
}

// Attach implements sandbox.Agent.
func (a *Agent) Attach(ctx context.Context, execID string) (sandbox.Process, error) {
	p, err := a.proc(execID)
	if err != nil {
		return nil, err
	}
	return &procStream{p: p, ctx: ctx}, nil
}

// Processes implements sandbox.Agent.
func (a *Agent) Processes(ctx context.Context) ([]sandbox.ProcessInfo, error) {
	a.sb.mu.Lock()
	defer a.sb.mu.Unlock()
	var out []sandbox.ProcessInfo
	for id := range a.sb.procs {
		out = append(out, sandbox.ProcessInfo{ExecID: id})
	}
	return out, nil
}

// WriteStdin implements sandbox.Agent.
func (a *Agent) WriteStdin(ctx context.Context, execID string, data []byte) error {
	p, err := a.proc(execID)
	if err != nil {
		return err
	}
	p.stdin <- append([]byte{}, data...)
	return nil
}

// CloseStdin implements sandbox.Agent.
func (a *Agent) CloseStdin(ctx context.Context, execID string) error {
	p, err := a.proc(execID)
	if err != nil {
		return err
	}
	p.stdin <- nil
	return nil
}

// Signal implements sandbox.Agent.
func (a *Agent) Signal(ctx context.Context, execID string, signal string) error {
	p, err := a.proc(execID)
	if err != nil {
		return err
	}
	select {
	case p.signal <- signal:
	default:
	}
	return nil
}

// Resize implements sandbox.Agent.
func (a *Agent) Resize(ctx context.Context, execID string, rows, cols uint16) error {
	_, err := a.proc(execID)
	return err
}

func (a *Agent) file(p string) (*fakeFile, error) {
	a.sb.mu.Lock()
	defer a.sb.mu.Unlock()
	f, ok := a.sb.files[p]
	if !ok {
		return nil, sandbox.NotFound(sandbox.ReasonFileNotFound, "%s: no such file", p)
	}
	return f, nil
}

// ReadFile implements sandbox.Agent.
func (a *Agent) ReadFile(ctx context.Context, p string) (io.ReadCloser, error) {
	f, err := a.file(p)
	if err != nil {
		return nil, err
	}
	if f.dir {
		return nil, sandbox.FailedPrecondition(sandbox.ReasonIsDirectory, "%s is a directory", p)
	}
	return io.NopCloser(bytes.NewReader(f.data)), nil
}

// WriteFile implements sandbox.Agent.
func (a *Agent) WriteFile(ctx context.Context, p string, mode os.FileMode, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	a.sb.mu.Lock()
	defer a.sb.mu.Unlock()
	a.sb.files[p] = &fakeFile{data: data, mode: mode}
	return nil
}

// Stat implements sandbox.Agent.
func (a *Agent) Stat(ctx context.Context, p string) (sandbox.FileInfo, error) {
	f, err := a.file(p)
	if err != nil {
		return sandbox.FileInfo{}, err
	}
	return info(p, f), nil
}

func info(p string, f *fakeFile) sandbox.FileInfo {
	mode := f.mode
	if f.dir {
		mode |= os.ModeDir
	}
	return sandbox.FileInfo{Name: path.Base(p), Path: p, Size: int64(len(f.data)), Mode: mode, IsDir: f.dir}
}

// ListDir implements sandbox.Agent.
func (a *Agent) ListDir(ctx context.Context, dir string) ([]sandbox.FileInfo, error) {
	a.sb.mu.Lock()
	defer a.sb.mu.Unlock()
	var out []sandbox.FileInfo
	for p, f := range a.sb.files {
		if p != dir && path.Dir(p) == dir {
			out = append(out, info(p, f))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// MkdirAll implements sandbox.Agent.
func (a *Agent) MkdirAll(ctx context.Context, p string, mode os.FileMode) error {
	a.sb.mu.Lock()
	defer a.sb.mu.Unlock()
	for ; p != "/"; p = path.Dir(p) {
		if _, ok := a.sb.files[p]; !ok {
			a.sb.files[p] = &fakeFile{dir: true, mode: mode}
		}
	}
	return nil
}

// Remove implements sandbox.Agent.
func (a *Agent) Remove(ctx context.Context, p string, recursive bool) error {
	if _, err := a.file(p); err != nil {
		return err
	}
	a.sb.mu.Lock()
	defer a.sb.mu.Unlock()
	for q := range a.sb.files {
		if q == p || (recursive && strings.HasPrefix(q, p+"/")) {
			delete(a.sb.files, q)
		}
	}
	return nil
}

// Rename implements sandbox.Agent.
func (a *Agent) Rename(ctx context.Context, from, to string) error {
	f, err := a.file(from)
	if err != nil {
		return err
	}
	a.sb.mu.Lock()
	defer a.sb.mu.Unlock()
	a.sb.files[to] = f
	delete(a.sb.files, from)
	return nil
}

// Logs implements sandbox.Agent: the main command's output so far, then
// (with Follow) nothing more until the main command ends.
func (a *Agent) Logs(ctx context.Context, opts sandbox.LogOptions) (sandbox.OutputStream, error) {
	a.sb.mu.Lock()
	chunks := append([]sandbox.Output(nil), a.sb.log...)
	a.sb.mu.Unlock()
	if opts.Tail > 0 && len(chunks) > opts.Tail {
		chunks = chunks[len(chunks)-opts.Tail:]
	}
	return &logStream{chunks: chunks, follow: opts.Follow, done: a.sb.done, ctx: ctx}, nil
}

type logStream struct {
	chunks []sandbox.Output
	follow bool
	done   chan struct{}
	ctx    context.Context
}

func (l *logStream) Recv() (sandbox.Output, error) {
	if len(l.chunks) > 0 {
		o := l.chunks[0]
		l.chunks = l.chunks[1:]
		return o, nil
	}
	if l.follow {
		select {
		case <-l.done:
		case <-l.ctx.Done():
			return sandbox.Output{}, l.ctx.Err()
		}
	}
	return sandbox.Output{}, io.EOF
}

func (l *logStream) Close() error { return nil }

// Close implements sandbox.Agent.
func (a *Agent) Close() error { return nil }
