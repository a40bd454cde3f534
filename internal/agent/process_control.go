package agent

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// stdinWriteTimeout bounds a stdin write to a process that does not read,
// when the caller's context has no deadline.
const stdinWriteTimeout = 30 * time.Second

func (ps *processService) List(ctx context.Context, req *agentpb.ListRequest) (*agentpb.ListResponse, error) {
	res := &agentpb.ListResponse{}
	for _, p := range ps.s.execs.list() {
		res.Processes = append(res.Processes, processInfoToWire(p))
	}
	return res, nil
}

func (ps *processService) WriteStdin(ctx context.Context, req *agentpb.WriteStdinRequest) (*agentpb.WriteStdinResponse, error) {
	p, err := ps.s.execs.get(req.GetExecId())
	if err != nil {
		return nil, err
	}
	in, err := p.openStdin()
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(stdinWriteTimeout)
	}
	_ = in.SetWriteDeadline(deadline)
	if _, err := in.Write(req.GetData()); err != nil {
		if os.IsTimeout(err) {
			return nil, sandbox.Errorf(sandbox.ErrDeadlineExceeded, sandbox.ReasonInvalidSpec, "process %s does not read its stdin", p.id)
		}
		return nil, sandbox.FailedPrecondition(sandbox.ReasonProcessExited, "process %s no longer reads its stdin: %w", p.id, err)
	}
	return &agentpb.WriteStdinResponse{}, nil
}

func (p *process) openStdin() (*os.File, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdin == nil {
		if p.exit != nil {
			return nil, sandbox.FailedPrecondition(sandbox.ReasonProcessExited, "process %s has exited", p.id)
		}
		return nil, sandbox.FailedPrecondition(sandbox.ReasonInvalidSpec, "process %s has no open stdin; start it with stdin enabled, and do not close it before writing", p.id)
	}
	return p.stdin, nil
}

func (ps *processService) CloseStdin(ctx context.Context, req *agentpb.CloseStdinRequest) (*agentpb.CloseStdinResponse, error) {
	p, err := ps.s.execs.get(req.GetExecId())
	if err != nil {
		return nil, err
	}
	if err := p.closeStdin(); err != nil {
		return nil, err
	}
	return &agentpb.CloseStdinResponse{}, nil
}

// closeStdin closes a pipe, or sends EOF (^D) on a PTY, whose master stays
// open for output.
func (p *process) closeStdin() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdin == nil {
		return nil // closed already, or the process has exited
	}
	if p.stdin == p.ptm {
		_, err := p.ptm.Write([]byte{4})
		if err != nil {
			return sandbox.FailedPrecondition(sandbox.ReasonProcessExited, "send EOF to process %s: %w", p.id, err)
		}
		return nil
	}
	p.stdin.Close()
	p.stdin = nil
	return nil
}

func (ps *processService) Signal(ctx context.Context, req *agentpb.SignalRequest) (*agentpb.SignalResponse, error) {
	p, err := ps.s.execs.get(req.GetExecId())
	if err != nil {
		return nil, err
	}
	sig, err := parseSignal(req.GetSignal())
	if err != nil {
		return nil, err
	}
	if err := p.signal(sig); err != nil {
		return nil, err
	}
	return &agentpb.SignalResponse{}, nil
}

// parseSignal accepts "SIGTERM", "TERM", "term" or "15".
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return 0, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "signal %d is out of range 1-64", n)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "unknown signal %q; give a name such as SIGTERM or a number such as 15", s)
}

func (ps *processService) Resize(ctx context.Context, req *agentpb.ResizeRequest) (*agentpb.ResizeResponse, error) {
	p, err := ps.s.execs.get(req.GetExecId())
	if err != nil {
		return nil, err
	}
	rows, cols := req.GetRows(), req.GetCols()
	if rows == 0 || cols == 0 || rows > 0xffff || cols > 0xffff {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "terminal size %dx%d is out of range 1-65535", rows, cols)
	}
	if !p.tty {
		return nil, sandbox.FailedPrecondition(sandbox.ReasonInvalidSpec, "process %s has no terminal; start it with a TTY to resize it", p.id)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exit != nil {
		return nil, sandbox.FailedPrecondition(sandbox.ReasonProcessExited, "process %s has exited", p.id)
	}
	if err := pty.Setsize(p.ptm, &pty.Winsize{Rows: uint16(rows), Cols: uint16(cols)}); err != nil {
		return nil, sandbox.Internal("resize the terminal of process %s: %w", p.id, err)
	}
	return &agentpb.ResizeResponse{}, nil
}
