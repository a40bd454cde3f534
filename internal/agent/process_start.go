package agent

import (
	"context"
	"time"

	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
	"github.com/sbx-run/sbx/internal/agentwire"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Bounds of an exec request.
const (
	maxTagLen  = 256
	maxTimeout = 7 * 24 * time.Hour
)

// processService implements ProcessService.
type processService struct{ s *Server }

// Start starts a process and streams its events until it exits or the
// client goes away (the process keeps running then).
func (ps *processService) Start(ctx context.Context, req *agentpb.StartRequest, call *agentwire.ServerCall) error {
	p, f, err := ps.s.startExec(req.GetSpec())
	if err != nil {
		return err
	}
	defer p.ring.unfollow(f)
	return streamEvents(ctx, p, f, call)
}

// Attach replays what the process's ring still holds, then follows it.
func (ps *processService) Attach(ctx context.Context, req *agentpb.AttachRequest, call *agentwire.ServerCall) error {
	p, err := ps.s.execs.get(req.GetExecId())
	if err != nil {
		return err
	}
	f := p.ring.follow()
	defer p.ring.unfollow(f)
	return streamEvents(ctx, p, f, call)
}

func streamEvents(ctx context.Context, p *process, f *follower, call *agentwire.ServerCall) error {
	started := &agentpb.ProcessEvent{Event: &agentpb.ProcessEvent_Started_{Started: &agentpb.ProcessEvent_Started{ExecId: p.id, Pid: int64(p.getPID())}}}
	if err := call.Send(started); err != nil {
		return err
	}
	for {
		c, ok, err := p.ring.next(ctx, f)
		if err != nil {
			return err
		}
		if !ok {
			// The exit event goes out with the end of the call, in one write.
			return call.Reply(&agentpb.ProcessEvent{Event: &agentpb.ProcessEvent_Exit{Exit: exitToWire(p.status())}})
		}
		out := &agentpb.ProcessEvent{Event: &agentpb.ProcessEvent_Output_{Output: &agentpb.ProcessEvent_Output{Stream: streamToWire(c.stream), Data: c.data}}}
		if err := call.Send(out); err != nil {
			return err
		}
	}
}

// startExec validates m, starts the process and returns it with a follower
// registered before the start, so that no output is missed.
func (s *Server) startExec(m *agentpb.ProcessSpec) (*process, *follower, error) {
	spec, err := s.execSpec(m)
	if err != nil {
		return nil, nil, err
	}
	p := &process{
		id: newExecID(), tag: m.GetTag(), argv: spec.argv, tty: spec.tty,
		ring: newRing(s.cfg.OutputBufferBytes), stop: s.stopping, started: time.Now(),
	}
	p.onDone = func(p *process) {
		s.execs.markEnded(p)
		s.trimSoon()
	}
	f := p.ring.follow()
	if err := s.execs.add(p); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	expired := s.expired
	s.started = true // a provisional start is final now (init)
	s.mu.Unlock()
	if expired {
		s.execs.remove(p)
		return nil, nil, sandbox.FailedPrecondition(sandbox.ReasonSandboxNotRunning, "the sandbox's deadline passed and it is ending; create a new sandbox")
	}
	s.beforeProcesses()
	if err := spawn(s.reaper, p, spec); err != nil {
		s.execs.remove(p)
		return nil, nil, err
	}
	return p, f, nil
}

// execSpec validates an exec request and fills in the sandbox's defaults.
func (s *Server) execSpec(m *agentpb.ProcessSpec) (procSpec, error) {
	if err := checkArgv(m.GetCommand()); err != nil {
		return procSpec{}, err
	}
	if len(m.GetTag()) > maxTagLen {
		return procSpec{}, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "tag is %d bytes long; the limit is %d", len(m.GetTag()), maxTagLen)
	}
	timeout := time.Duration(m.GetTimeoutMs()) * time.Millisecond
	if m.GetTimeoutMs() < 0 || timeout > maxTimeout {
		return procSpec{}, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "timeout %dms is out of range; give 0 (none) up to %s", m.GetTimeoutMs(), maxTimeout)
	}
	if m.GetRows() > 0xffff || m.GetCols() > 0xffff {
		return procSpec{}, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "terminal size %dx%d is out of range; rows and cols are at most 65535", m.GetRows(), m.GetCols())
	}
	baseEnv, dir, ident := s.sandboxDefaults()
	env, err := mergeEnv(baseEnv, m.GetEnv())
	if err != nil {
		return procSpec{}, err
	}
	if m.GetWorkingDir() != "" {
		if dir, err = cleanPath(m.GetWorkingDir(), dir); err != nil {
			return procSpec{}, err
		}
	}
	if m.GetUser() != "" {
		if ident, err = lookupUser("/", m.GetUser()); err != nil {
			return procSpec{}, err
		}
		if _, ok := m.GetEnv()["HOME"]; !ok {
			env, _ = mergeEnv(env, map[string]string{"HOME": ident.home})
		}
	}
	rows, cols := uint16(m.GetRows()), uint16(m.GetCols())
	if m.GetTty() && (rows == 0 || cols == 0) {
		rows, cols = 24, 80
	}
	return procSpec{
		argv: m.GetCommand(), env: env, dir: dir, ident: ident,
		stdin: m.GetStdin(), tty: m.GetTty(), rows: rows, cols: cols, timeout: timeout,
	}, nil
}
