package agent

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
	"github.com/sbx-run/sbx/internal/agentwire"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// maxInitFiles bounds the number of files one Init writes.
const maxInitFiles = 1000

// agentService implements AgentService: Ping, Init, WaitMain and Logs.
type agentService struct{ s *Server }

func (a *agentService) Ping(ctx context.Context, req *agentpb.PingRequest) (*agentpb.PingResponse, error) {
	a.s.mu.Lock()
	inited := a.s.inited
	a.s.mu.Unlock()
	return &agentpb.PingResponse{Pid: int64(os.Getpid()), Initialized: inited}, nil
}

func (a *agentService) Init(ctx context.Context, req *agentpb.InitRequest) (*agentpb.InitResponse, error) {
	if n := req.GetStart().GetDeadlineUnixNano(); n < 0 {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "deadline %d is negative; give Unix nanoseconds, or 0 for none", n)
	}
	pid, err := a.s.init(imageFromWire(req.GetImage()), startFromWire(req.GetStart()))
	if err != nil {
		return nil, err
	}
	return &agentpb.InitResponse{MainPid: int64(pid)}, nil
}

// init applies the request-specific start once: env, working dir, user,
// files, then the main command. It returns the main command's pid (0 when
// idle).
//
// One exception to once: an empty start (the image's defaults, no
// command) is provisional until a process is started, and a later Init
// replaces it. A warm pool starts its sandboxes that way, so that claiming
// one for a request that brings nothing of its own needs no call to the
// agent, while any other request still gets exactly its own start. Before
// a process runs, only the host talks to the agent, and an empty start
// leaves nothing behind but the image's working dir.
//
// Every Init sets the sandbox's deadline (backstop.go) to st.Deadline. An
// empty start with a deadline on an initialized agent does nothing else:
// it is how a warm sandbox claimed by a request with no start of its own
// (whose empty start the pool applied) gets the tenant's deadline, while
// the tenant's first exec may already run.
func (s *Server) init(img sandbox.ImageConfig, st sandbox.StartSpec) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.expired {
		return 0, sandbox.FailedPrecondition(sandbox.ReasonSandboxNotRunning, "the sandbox's deadline passed and it is ending; create a new sandbox")
	}
	if s.inited && st.Empty() && !st.Deadline.IsZero() {
		s.deadline.set(st.Deadline)
		if s.main != nil {
			return s.main.getPID(), nil
		}
		return 0, nil
	}
	if s.inited && (!s.provisional || s.started) {
		return 0, sandbox.FailedPrecondition(sandbox.ReasonAgentInitialized, "the sandbox was started already; a sandbox is started once")
	}
	if len(st.Files) > maxInitFiles {
		return 0, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "start has %d files; the limit is %d", len(st.Files), maxInitFiles)
	}
	base, err := mergeEnv(s.startEnv, envMap(img.Env))
	if err != nil {
		return 0, err
	}
	env, err := mergeEnv(base, st.Env)
	if err != nil {
		return 0, err
	}
	dir := firstNonEmpty(st.WorkingDir, img.WorkingDir, "/")
	if dir, err = cleanPath(dir, firstNonEmpty(img.WorkingDir, "/")); err != nil {
		return 0, err
	}
	ident, err := lookupUser("/", firstNonEmpty(st.User, img.User))
	if err != nil {
		return 0, err
	}
	if ident != nil && !envHas(env, "HOME") {
		env = append(env, "HOME="+ident.home)
	}
	if len(st.Command) > 0 {
		if err := checkArgv(st.Command); err != nil {
			return 0, err
		}
	}
	s.inited, s.provisional = true, false
	s.deadline.set(st.Deadline)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fsError("create the working dir", dir, err)
	}
	for _, f := range st.Files {
		if err := s.writeInitFile(f, dir); err != nil {
			return 0, err
		}
	}
	s.env, s.dir, s.ident = env, dir, ident
	if len(st.Command) == 0 {
		s.provisional = st.Empty()
		return 0, nil
	}
	s.started = true
	p := &process{id: "main", argv: st.Command, sink: s.log, stop: s.stopping}
	p.onDone = func(p *process) { s.mainEnded(p.status()) }
	s.beforeProcesses()
	if err := spawn(s.reaper, p, procSpec{argv: st.Command, env: env, dir: dir, ident: ident, mergeOutput: true}); err != nil {
		// Record the failure as the main command's end, so WaitMain returns.
		at := time.Now()
		fmtErr := []byte("sbx-agent: " + err.Error() + "\n")
		_, _ = s.log.Write(fmtErr)
		go s.mainEnded(&sandbox.ExitStatus{Code: 127, At: at})
		return 0, err
	}
	s.main = p
	return p.pid, nil
}

func (s *Server) writeInitFile(f sandbox.File, dir string) error {
	path, err := cleanPath(f.Path, dir)
	if err != nil {
		return err
	}
	if s.cfg.MaxFileBytes > 0 && int64(len(f.Content)) > s.cfg.MaxFileBytes {
		return sandbox.InvalidArgument(sandbox.ReasonFileTooLarge, "file %s is %d bytes; the limit is %d", path, len(f.Content), s.cfg.MaxFileBytes)
	}
	mode := f.Mode & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
	if mode.Perm() == 0 {
		mode |= 0o444
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fsError("write", path, err)
	}
	err = writeAtomic(path, mode, false, func(w *os.File) error {
		_, err := w.Write(f.Content)
		return err
	})
	if err != nil {
		return fsError("write", path, err)
	}
	return nil
}

// mainEnded records the main command's exit: in ExitFile, then for WaitMain.
// After the deadline passed, the exit is marked TimedOut: the agent ended
// it (backstop.go).
func (s *Server) mainEnded(st *sandbox.ExitStatus) {
	s.mu.Lock()
	if s.expired {
		st.TimedOut = true
	}
	s.mu.Unlock()
	_ = writeExitFile(s.cfg.StateDir, *st)
	s.log.end()
	s.mu.Lock()
	s.mainExit = st
	s.mu.Unlock()
	close(s.mainDone)
}

func (a *agentService) WaitMain(ctx context.Context, req *agentpb.WaitMainRequest) (*agentpb.WaitMainResponse, error) {
	s := a.s
	select {
	case <-s.mainDone:
		s.mu.Lock()
		st := *s.mainExit
		s.mu.Unlock()
		return &agentpb.WaitMainResponse{Exit: exitToWire(&st)}, nil
	case <-s.stopping:
		select {
		case <-s.mainDone: // an idle sandbox ended at its deadline
			return a.WaitMain(ctx, req)
		default:
		}
		s.mu.Lock()
		hasMain := s.main != nil
		s.mu.Unlock()
		if hasMain {
			select {
			case <-s.mainDone:
				return a.WaitMain(ctx, req)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		// An idle sandbox ends when it is told to stop.
		st := sandbox.ExitStatus{Code: 128 + 15, Signal: "SIGTERM", At: time.Now()}
		return &agentpb.WaitMainResponse{Exit: exitToWire(&st)}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (a *agentService) Logs(ctx context.Context, req *agentpb.LogsRequest, call *agentwire.ServerCall) error {
	var w *logWriter
	if req.GetFollow() {
		w = a.s.log
	}
	r, err := openLogReader(a.s.cfg.StateDir, logQuery{
		tail: int(min(req.GetTail(), 1<<24)), since: max(req.GetSinceUnixNano(), 0), timed: req.GetTimestamps(),
	}, w)
	if err != nil {
		return err
	}
	defer r.Close()
	// An empty first message says the log is open, so that the client's
	// call returns even while the log is still empty.
	if err := call.Send(&agentpb.LogsResponse{}); err != nil {
		return err
	}
	for {
		b, err := r.Next(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		msg := &agentpb.LogsResponse{Data: b}
		if req.GetTimestamps() {
			msg.UnixNano = r.At()
		}
		if err := call.Send(msg); err != nil {
			return err
		}
	}
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// envMap turns "K=V" entries into a map (a later entry wins).
func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if k != "" {
			m[k] = v
		}
	}
	return m
}
