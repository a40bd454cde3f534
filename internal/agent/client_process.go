package agent

import (
	"context"
	"io"

	"connectrpc.com/connect"

	agentv1 "github.com/sbx-run/sbx/gen/sbx/agent/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Exec starts a process; the returned stream starts with EventStarted.
func (c *Client) Exec(ctx context.Context, spec sandbox.ExecSpec) (sandbox.Process, error) {
	m := &agentv1.ProcessSpec{
		Command: spec.Command, Env: spec.Env, WorkingDir: spec.WorkingDir, User: spec.User,
		Stdin: spec.Stdin, Tty: spec.TTY, Rows: uint32(spec.Rows), Cols: uint32(spec.Cols),
		TimeoutMs: spec.Timeout.Milliseconds(), Tag: spec.Tag,
	}
	ctx, cancel := context.WithCancel(ctx)
	st, err := c.proc.Start(ctx, connect.NewRequest(&agentv1.StartRequest{Spec: m}))
	if err != nil {
		cancel()
		return nil, fromWire(err, "start the process")
	}
	return openProcess(st, cancel, "start the process")
}

// Attach reconnects to a process by exec id.
func (c *Client) Attach(ctx context.Context, execID string) (sandbox.Process, error) {
	ctx, cancel := context.WithCancel(ctx)
	st, err := c.proc.Attach(ctx, connect.NewRequest(&agentv1.AttachRequest{ExecId: execID}))
	if err != nil {
		cancel()
		return nil, fromWire(err, "attach to process "+execID)
	}
	return openProcess(st, cancel, "attach to process "+execID)
}

// openProcess waits for the Started event, so that a failed start is an
// error of Exec and the exec id is known.
func openProcess(st *connect.ServerStreamForClient[agentv1.ProcessEvent], cancel context.CancelFunc, what string) (*processStream, error) {
	p := &processStream{st: st, cancel: cancel}
	if !st.Receive() {
		err := st.Err()
		st.Close()
		cancel()
		if err == nil {
			err = sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "%s: the agent ended the stream before the process started", what)
		}
		return nil, fromWire(err, what)
	}
	started := st.Msg().GetStarted()
	if started == nil {
		st.Close()
		cancel()
		return nil, sandbox.Internal("%s: the agent's first event was not Started", what)
	}
	p.id = started.GetExecId()
	p.first = &sandbox.ExecEvent{Kind: sandbox.EventStarted, ExecID: p.id, PID: int(started.GetPid())}
	return p, nil
}

// processStream is a sandbox.Process over a Start or Attach stream.
type processStream struct {
	st     *connect.ServerStreamForClient[agentv1.ProcessEvent]
	cancel context.CancelFunc
	id     string
	first  *sandbox.ExecEvent
	ended  bool
}

func (p *processStream) ID() string { return p.id }

func (p *processStream) Recv() (sandbox.ExecEvent, error) {
	if p.first != nil {
		ev := *p.first
		p.first = nil
		return ev, nil
	}
	if p.ended || !p.st.Receive() {
		if err := p.st.Err(); err != nil {
			return sandbox.ExecEvent{}, fromWire(err, "receive from process "+p.id)
		}
		if !p.ended {
			return sandbox.ExecEvent{}, sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "process %s: the stream ended before the exit event; attach again", p.id)
		}
		return sandbox.ExecEvent{}, io.EOF
	}
	switch ev := p.st.Msg().GetEvent().(type) {
	case *agentv1.ProcessEvent_Output_:
		return sandbox.ExecEvent{Kind: sandbox.EventOutput, Stream: streamFromWire(ev.Output.GetStream()), Data: ev.Output.GetData()}, nil
	case *agentv1.ProcessEvent_Exit:
		p.ended = true
		return sandbox.ExecEvent{Kind: sandbox.EventExit, Exit: exitFromWire(ev.Exit)}, nil
	case *agentv1.ProcessEvent_Started_:
		return sandbox.ExecEvent{Kind: sandbox.EventStarted, ExecID: ev.Started.GetExecId(), PID: int(ev.Started.GetPid())}, nil
	}
	return sandbox.ExecEvent{}, sandbox.Internal("process %s: unknown event from the agent", p.id)
}

func (p *processStream) Close() error {
	p.cancel()
	return p.st.Close()
}

// Processes lists running and recently ended processes.
func (c *Client) Processes(ctx context.Context) ([]sandbox.ProcessInfo, error) {
	res, err := c.proc.List(ctx, connect.NewRequest(&agentv1.ListRequest{}))
	if err != nil {
		return nil, fromWire(err, "list processes")
	}
	out := make([]sandbox.ProcessInfo, 0, len(res.Msg.GetProcesses()))
	for _, m := range res.Msg.GetProcesses() {
		out = append(out, processInfoFromWire(m))
	}
	return out, nil
}

// WriteStdin writes data to a process's stdin.
func (c *Client) WriteStdin(ctx context.Context, execID string, data []byte) error {
	for len(data) > 0 { // stay under the agent's message bound
		n := min(len(data), maxChunk)
		_, err := c.proc.WriteStdin(ctx, connect.NewRequest(&agentv1.WriteStdinRequest{ExecId: execID, Data: data[:n]}))
		if err != nil {
			return fromWire(err, "write to the stdin of process "+execID)
		}
		data = data[n:]
	}
	return nil
}

// CloseStdin closes a process's stdin.
func (c *Client) CloseStdin(ctx context.Context, execID string) error {
	_, err := c.proc.CloseStdin(ctx, connect.NewRequest(&agentv1.CloseStdinRequest{ExecId: execID}))
	return fromWire(err, "close the stdin of process "+execID)
}

// Signal sends a signal to a process's group.
func (c *Client) Signal(ctx context.Context, execID string, signal string) error {
	_, err := c.proc.Signal(ctx, connect.NewRequest(&agentv1.SignalRequest{ExecId: execID, Signal: signal}))
	return fromWire(err, "signal process "+execID)
}

// Resize sets the window size of a process's PTY.
func (c *Client) Resize(ctx context.Context, execID string, rows, cols uint16) error {
	_, err := c.proc.Resize(ctx, connect.NewRequest(&agentv1.ResizeRequest{ExecId: execID, Rows: uint32(rows), Cols: uint32(cols)}))
	return fromWire(err, "resize the terminal of process "+execID)
}
