package server

import (
	"context"
	"errors"
	"io"
	"regexp"
	"time"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Bounds on exec requests.
const (
	maxChunk       = 1 << 20 // stdin writes and file chunks
	maxExecTimeout = 7 * 24 * time.Hour
	maxTagLen      = 128
)

var signalRE = regexp.MustCompile(`^[A-Za-z0-9+]{1,16}$`)

func invalidf(format string, args ...any) error {
	return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, format, args...)
}

// execSpec validates an ExecRequest and returns its domain spec and its
// output limit.
func (d *deps) execSpec(r *sbxv1.ExecRequest) (sandbox.ExecSpec, int64, error) {
	if err := lifecycle.ValidateID("sandbox_id", r.GetSandboxId()); err != nil {
		return sandbox.ExecSpec{}, 0, err
	}
	if len(r.GetCommand()) == 0 {
		return sandbox.ExecSpec{}, 0, invalidf("command is empty: give argv, e.g. [\"python\", \"-c\", \"print(1)\"]")
	}
	if err := lifecycle.ValidateCommand("command", r.GetCommand()); err != nil {
		return sandbox.ExecSpec{}, 0, err
	}
	if err := lifecycle.ValidateEnv(r.GetEnv()); err != nil {
		return sandbox.ExecSpec{}, 0, err
	}
	if wd := r.GetWorkingDir(); wd != "" {
		if err := lifecycle.ValidatePath("working_dir", wd); err != nil {
			return sandbox.ExecSpec{}, 0, err
		}
	}
	timeout := seconds(int64(r.GetTimeoutSeconds()))
	switch {
	case len(r.GetUser()) > lifecycle.MaxUserLen:
		return sandbox.ExecSpec{}, 0, invalidf("user is too long: give a uid, uid:gid or a name")
	case len(r.GetTag()) > maxTagLen:
		return sandbox.ExecSpec{}, 0, invalidf("tag is %d bytes: at most %d are allowed", len(r.GetTag()), maxTagLen)
	case r.GetRows() > 0xffff || r.GetCols() > 0xffff:
		return sandbox.ExecSpec{}, 0, invalidf("rows and cols must be at most 65535")
	case timeout < 0 || timeout > maxExecTimeout:
		return sandbox.ExecSpec{}, 0, invalidf("timeout_seconds %d is out of range: give 0 (none) to %d", r.GetTimeoutSeconds(), int(maxExecTimeout/time.Second))
	case r.GetOutputLimitBytes() < 0:
		return sandbox.ExecSpec{}, 0, invalidf("output_limit_bytes must not be negative")
	}
	limit := r.GetOutputLimitBytes()
	if limit == 0 || limit > d.outputLimit {
		limit = d.outputLimit
	}
	return sandbox.ExecSpec{
		Command: r.GetCommand(), Env: r.GetEnv(), WorkingDir: r.GetWorkingDir(), User: r.GetUser(),
		Stdin: r.GetStdin(), TTY: r.GetTty(), Rows: uint16(r.GetRows()), Cols: uint16(r.GetCols()),
		Timeout: timeout, Tag: r.GetTag(),
	}, limit, nil
}

// checkExecRef validates a (sandbox id, exec id) pair.
func checkExecRef(sandboxID, execID string) error {
	if err := lifecycle.ValidateID("sandbox_id", sandboxID); err != nil {
		return err
	}
	return lifecycle.ValidateID("exec_id", execID)
}

// pumpExec forwards a process's events to send until its exit event,
// forwarding at most limit bytes of output; the exit event says whether
// output was dropped.
func pumpExec(p sandbox.Process, limit int64, send func(*sbxv1.ExecEvent) error) error {
	var sent int64
	truncated := false
	for {
		ev, err := p.Recv()
		if errors.Is(err, io.EOF) {
			return sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "the process stream ended without an exit status: re-attach with AttachExec")
		}
		if err != nil {
			return err
		}
		var out *sbxv1.ExecEvent
		switch ev.Kind {
		case sandbox.EventStarted:
			out = &sbxv1.ExecEvent{Event: &sbxv1.ExecEvent_Started{Started: &sbxv1.ExecStarted{ExecId: ev.ExecID, Pid: int32(ev.PID)}}}
		case sandbox.EventOutput:
			data := ev.Data
			if room := limit - sent; int64(len(data)) > room {
				data = data[:max(room, 0)]
				truncated = true
			}
			if len(data) == 0 {
				continue
			}
			sent += int64(len(data))
			if ev.Stream == sandbox.Stderr {
				out = &sbxv1.ExecEvent{Event: &sbxv1.ExecEvent_Stderr{Stderr: data}}
			} else {
				out = &sbxv1.ExecEvent{Event: &sbxv1.ExecEvent_Stdout{Stdout: data}}
			}
		case sandbox.EventExit:
			x := ev.Exit
			if x == nil {
				x = &sandbox.ExitStatus{Code: -1}
			}
			return send(&sbxv1.ExecEvent{Event: &sbxv1.ExecEvent_Exit{Exit: &sbxv1.ExecExit{
				Code: int32(x.Code), Signal: x.Signal, TimedOut: x.TimedOut, OomKilled: x.OOMKilled,
				Truncated: truncated, At: ts(x.At)}}})
		default:
			continue
		}
		if err := send(out); err != nil {
			return err
		}
	}
}

// withAgent runs fn with the agent of a tenant's running sandbox.
func (d *deps) withAgent(ctx context.Context, sandboxID string, fn func(sandbox.Agent) error) error {
	if err := lifecycle.ValidateID("sandbox_id", sandboxID); err != nil {
		return err
	}
	a, err := d.m.Agent(ctx, tenant(ctx), sandboxID)
	if err != nil {
		return err
	}
	defer a.Close()
	return fn(a)
}
