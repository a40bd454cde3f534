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

// Client talks to one agent over its Unix socket, with Connect over h2c
// (HTTP/2 without TLS, so that client streams work). It implements
// sandbox.Agent; its errors are *sandbox.Error values.
type Client struct {
	transport *http.Transport
	agent     agentv1connect.AgentServiceClient
	proc      agentv1connect.ProcessServiceClient
	fs        agentv1connect.FilesystemServiceClient
}

var _ sandbox.Agent = (*Client)(nil)

// InitSpec is what Init applies once per sandbox: the image's defaults and
// the request-specific start.
type InitSpec struct {
	Image sandbox.ImageConfig
	Start sandbox.StartSpec
}

// Dial returns a client of the agent listening on the unix socket at
// socketPath; it connects lazily.
func Dial(socketPath string) *Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: &protocols,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	hc := &http.Client{Transport: tr}
	const base = "http://sbx-agent"
	opts := []connect.ClientOption{connect.WithReadMaxBytes(maxMessageBytes), connect.WithAcceptCompression("gzip", nil, nil)}
	return &Client{
		transport: tr,
		agent:     agentv1connect.NewAgentServiceClient(hc, base, opts...),
		proc:      agentv1connect.NewProcessServiceClient(hc, base, opts...),
		fs:        agentv1connect.NewFilesystemServiceClient(hc, base, opts...),
	}
}

// WaitReady polls until the agent answers, or ctx ends.
func (c *Client) WaitReady(ctx context.Context) error {
	delay := time.Millisecond
	for {
		_, err := c.agent.Ping(ctx, connect.NewRequest(&agentv1.PingRequest{}))
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "the sandbox agent did not answer in time; see the sandbox's log: %w", err)
		case <-time.After(delay):
		}
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}

// Init applies spec once per sandbox; a second call is FailedPrecondition.
func (c *Client) Init(ctx context.Context, spec InitSpec) error {
	_, err := c.agent.Init(ctx, connect.NewRequest(&agentv1.InitRequest{Image: imageToWire(spec.Image), Start: startToWire(spec.Start)}))
	return fromWire(err, "start the sandbox")
}

// WaitMain blocks until the main command exits (for an idle sandbox: until
// the agent is told to stop) and returns how it ended.
func (c *Client) WaitMain(ctx context.Context) (sandbox.ExitStatus, error) {
	res, err := c.agent.WaitMain(ctx, connect.NewRequest(&agentv1.WaitMainRequest{}))
	if err != nil {
		return sandbox.ExitStatus{}, fromWire(err, "wait for the main command")
	}
	return *exitFromWire(res.Msg.GetExit()), nil
}

// Logs streams the main command's output (stdout and stderr interleaved,
// reported as Stdout).
func (c *Client) Logs(ctx context.Context, opts sandbox.LogOptions) (sandbox.OutputStream, error) {
	if opts.Tail < 0 {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "log tail %d is negative; give 0 for all lines", opts.Tail)
	}
	ctx, cancel := context.WithCancel(ctx)
	st, err := c.agent.Logs(ctx, connect.NewRequest(&agentv1.LogsRequest{Tail: uint32(opts.Tail), Follow: opts.Follow}))
	if err != nil {
		cancel()
		return nil, fromWire(err, "read the sandbox log")
	}
	return &logStream{st: st, cancel: cancel}, nil
}

type logStream struct {
	st     *connect.ServerStreamForClient[agentv1.LogsResponse]
	cancel context.CancelFunc
}

func (l *logStream) Recv() (sandbox.Output, error) {
	for l.st.Receive() {
		if data := l.st.Msg().GetData(); len(data) > 0 {
			return sandbox.Output{Stream: sandbox.Stdout, Data: data}, nil
		}
	}
	if err := l.st.Err(); err != nil {
		return sandbox.Output{}, fromWire(err, "read the sandbox log")
	}
	return sandbox.Output{}, io.EOF
}

func (l *logStream) Close() error {
	l.cancel()
	return l.st.Close()
}

// Close releases idle connections; running processes are not affected.
func (c *Client) Close() error {
	c.transport.CloseIdleConnections()
	return nil
}
