package agent

import (
	"context"
	"io"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"

	agentv1 "github.com/sbx-run/sbx/gen/sbx/agent/v1"
	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentv1connect"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// newStreamClient returns a ProcessService client over HTTP/1.1, for the
// Start and Attach event streams, and its transport. Over HTTP/1.1 the
// handler's writes and the caller's reads go straight to the connection;
// the HTTP/2 transport and server pass every frame through goroutines of
// their own (a dozen hand-offs for the frames of one exec), which cost more
// than the rest of an exec's round trip in the host and the agent. A
// stream read to its end leaves its connection to the next exec; each
// concurrent stream has a connection of its own (dialed like the HTTP/2
// one, with its checks).
func newStreamClient(dial func(context.Context) (net.Conn, error), base string, opts []connect.ClientOption) (agentv1connect.ProcessServiceClient, *http.Transport) {
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		DisableCompression:  true,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	return agentv1connect.NewProcessServiceClient(&http.Client{Transport: tr}, base, opts...), tr
}

// prepareStreams opens a connection for the event streams in the
// background, once per client, once the agent answers (for a fresh agent:
// once it was initialized, see WaitStarting): a List call over the streams
// transport leaves it idle in the pool, so that the first exec of a
// sandbox (often right after a warm hand-off) does not dial on its
// critical path.
func (c *Client) prepareStreams() {
	c.prepared.Do(func() {
		c.preparing.Add(1)
		go func() {
			defer c.preparing.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _ = c.streams.List(ctx, connect.NewRequest(&agentv1.ListRequest{}))
		}()
	})
}

// Exec starts a process; the returned stream starts with EventStarted.
func (c *Client) Exec(ctx context.Context, spec sandbox.ExecSpec) (sandbox.Process, error) {
	m := &agentv1.ProcessSpec{
		Command: spec.Command, Env: spec.Env, WorkingDir: spec.WorkingDir, User: spec.User,
		Stdin: spec.Stdin, Tty: spec.TTY, Rows: uint32(spec.Rows), Cols: uint32(spec.Cols),
		TimeoutMs: spec.Timeout.Milliseconds(), Tag: spec.Tag,
	}
	ctx, cancel := context.WithCancel(ctx)
	st, err := c.streams.Start(ctx, connect.NewRequest(&agentv1.StartRequest{Spec: m}))
	if err != nil {
		cancel()
		return nil, fromWire(err, "start the process")
	}
	return openProcess(st, cancel, "start the process")
}

// Attach reconnects to a process by exec id.
func (c *Client) Attach(ctx context.Context, execID string) (sandbox.Process, error) {
	ctx, cancel := context.WithCancel(ctx)
	st, err := c.streams.Attach(ctx, connect.NewRequest(&agentv1.AttachRequest{ExecId: execID}))
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

// closeDrainWait bounds how long Close reads the rest of an ended stream.
const closeDrainWait = time.Second

func (p *processStream) Close() error {
	if p.ended {
		// The agent ends the stream right after the exit event. Reading that
		// end closes the HTTP/2 stream cleanly; cancelling first would make
		// this side send, and the agent handle, a RST_STREAM on every exec.
		t := time.AfterFunc(closeDrainWait, p.cancel)
		for p.st.Receive() {
		}
		t.Stop()
	}
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
