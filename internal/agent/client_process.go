package agent

import (
	"context"
	"io"
	"time"

	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
	"github.com/sbx-run/sbx/internal/agentwire"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Exec starts a process; the returned stream starts with EventStarted.
func (c *Client) Exec(ctx context.Context, spec sandbox.ExecSpec) (sandbox.Process, error) {
	m := &agentpb.ProcessSpec{
		Command: spec.Command, Env: spec.Env, WorkingDir: spec.WorkingDir, User: spec.User,
		Stdin: spec.Stdin, Tty: spec.TTY, Rows: uint32(spec.Rows), Cols: uint32(spec.Cols),
		TimeoutMs: spec.Timeout.Milliseconds(), Tag: spec.Tag,
	}
	const what = "start the process"
	call, err := c.open(ctx, methodStart, &agentpb.StartRequest{Spec: m}, what)
	if err != nil {
		return nil, err
	}
	return openProcess(call, what)
}

// Attach reconnects to a process by exec id.
func (c *Client) Attach(ctx context.Context, execID string) (sandbox.Process, error) {
	what := "attach to process " + execID
	call, err := c.open(ctx, methodAttach, &agentpb.AttachRequest{ExecId: execID}, what)
	if err != nil {
		return nil, err
	}
	return openProcess(call, what)
}

// openProcess waits for the Started event, so that a failed start is an
// error of Exec and the exec id is known.
func openProcess(call *agentwire.Call, what string) (*processStream, error) {
	var ev agentpb.ProcessEvent
	if err := call.Recv(&ev); err != nil {
		call.Close()
		if err == io.EOF {
			return nil, sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "%s: the agent ended the stream before the process started", what)
		}
		return nil, fromWire(err, what)
	}
	started := ev.GetStarted()
	if started == nil {
		call.Close()
		return nil, sandbox.Internal("%s: the agent's first event was not Started", what)
	}
	p := &processStream{call: call, id: started.GetExecId()}
	p.first = &sandbox.ExecEvent{Kind: sandbox.EventStarted, ExecID: p.id, PID: int(started.GetPid())}
	return p, nil
}

// processStream is a sandbox.Process over a Start or Attach call.
type processStream struct {
	call  *agentwire.Call
	id    string
	first *sandbox.ExecEvent
	ended bool
}

func (p *processStream) ID() string { return p.id }

func (p *processStream) Recv() (sandbox.ExecEvent, error) {
	if p.first != nil {
		ev := *p.first
		p.first = nil
		return ev, nil
	}
	var m agentpb.ProcessEvent
	if err := p.call.Recv(&m); err != nil {
		if err != io.EOF {
			return sandbox.ExecEvent{}, fromWire(err, "receive from process "+p.id)
		}
		if !p.ended {
			return sandbox.ExecEvent{}, sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "process %s: the stream ended before the exit event; attach again", p.id)
		}
		return sandbox.ExecEvent{}, io.EOF
	}
	switch ev := m.GetEvent().(type) {
	case *agentpb.ProcessEvent_Output_:
		return sandbox.ExecEvent{Kind: sandbox.EventOutput, Stream: streamFromWire(ev.Output.GetStream()), Data: ev.Output.GetData()}, nil
	case *agentpb.ProcessEvent_Exit:
		p.ended = true
		return sandbox.ExecEvent{Kind: sandbox.EventExit, Exit: exitFromWire(ev.Exit)}, nil
	case *agentpb.ProcessEvent_Started_:
		return sandbox.ExecEvent{Kind: sandbox.EventStarted, ExecID: ev.Started.GetExecId(), PID: int(ev.Started.GetPid())}, nil
	}
	return sandbox.ExecEvent{}, sandbox.Internal("process %s: unknown event from the agent", p.id)
}

// closeDrainWait bounds how long Close waits for the end of a call whose
// exit event arrived.
const closeDrainWait = time.Second

// Close ends the stream. After the exit event, the call's end follows at
// once (the agent sends both in one write): reading it leaves the
// connection to the next call. Otherwise the connection is closed, which
// the agent takes as the client going away (the process keeps running).
func (p *processStream) Close() error {
	if p.ended {
		t := time.AfterFunc(closeDrainWait, p.call.Abort)
		_ = p.call.Recv(nil)
		t.Stop()
	}
	p.call.Close()
	return nil
}

// Processes lists running and recently ended processes.
func (c *Client) Processes(ctx context.Context) ([]sandbox.ProcessInfo, error) {
	var res agentpb.ListResponse
	if err := c.wire.Unary(ctx, methodList, &agentpb.ListRequest{}, &res); err != nil {
		return nil, fromWire(err, "list processes")
	}
	out := make([]sandbox.ProcessInfo, 0, len(res.GetProcesses()))
	for _, m := range res.GetProcesses() {
		out = append(out, processInfoFromWire(m))
	}
	return out, nil
}

// WriteStdin writes data to a process's stdin.
func (c *Client) WriteStdin(ctx context.Context, execID string, data []byte) error {
	for len(data) > 0 { // stay under the agent's message bound
		n := min(len(data), maxChunk)
		err := c.wire.Unary(ctx, methodWriteStdin, &agentpb.WriteStdinRequest{ExecId: execID, Data: data[:n]}, &agentpb.WriteStdinResponse{})
		if err != nil {
			return fromWire(err, "write to the stdin of process "+execID)
		}
		data = data[n:]
	}
	return nil
}

// CloseStdin closes a process's stdin.
func (c *Client) CloseStdin(ctx context.Context, execID string) error {
	err := c.wire.Unary(ctx, methodCloseStdin, &agentpb.CloseStdinRequest{ExecId: execID}, &agentpb.CloseStdinResponse{})
	return fromWire(err, "close the stdin of process "+execID)
}

// Signal sends a signal to a process's group.
func (c *Client) Signal(ctx context.Context, execID string, signal string) error {
	err := c.wire.Unary(ctx, methodSignal, &agentpb.SignalRequest{ExecId: execID, Signal: signal}, &agentpb.SignalResponse{})
	return fromWire(err, "signal process "+execID)
}

// Resize sets the window size of a process's PTY.
func (c *Client) Resize(ctx context.Context, execID string, rows, cols uint16) error {
	err := c.wire.Unary(ctx, methodResize, &agentpb.ResizeRequest{ExecId: execID, Rows: uint32(rows), Cols: uint32(cols)}, &agentpb.ResizeResponse{})
	return fromWire(err, "resize the terminal of process "+execID)
}
