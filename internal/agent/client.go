package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

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
	// streams carries the process event streams over HTTP/1.1 (see
	// client_process.go); streamsTr is its transport.
	streams   agentv1connect.ProcessServiceClient
	streamsTr *http.Transport
	// preparing counts prepareStreams calls in flight (tests wait for
	// them); prepared makes it once per client.
	preparing sync.WaitGroup
	prepared  sync.Once
}

var _ sandbox.Agent = (*Client)(nil)

// InitSpec is what Init applies once per sandbox: the image's defaults and
// the request-specific start.
type InitSpec struct {
	Image sandbox.ImageConfig
	Start sandbox.StartSpec
}

// Dial returns a client of the agent listening on the unix socket at
// socketPath, a path the caller trusts (the host must use DialState); it
// connects lazily.
func Dial(socketPath string) *Client {
	return newClient(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socketPath)
	})
}

// DialState returns a client of the agent serving SocketName in stateDir,
// a dir that sandbox root can write, for the host. Each connection opens the
// socket beneath stateDir without following any symlink, checks that it is
// a socket, connects through that very descriptor (so nothing can be
// swapped in between), and then has verify judge the listening peer's pid
// (SO_PEERCRED, as this process's pid namespace sees it) before any request
// is sent: a socket that a sandbox process bound in the agent's place is
// refused. It connects lazily, once per client while the connection lasts.
func DialState(stateDir string, verify func(peerPID int) error) *Client {
	return newClient(func(ctx context.Context) (net.Conn, error) {
		return dialBeneath(ctx, stateDir, verify)
	})
}

func newClient(dial func(context.Context) (net.Conn, error)) *Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols:           &protocols,
		HTTP2:               http2Config(),
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	hc := &http.Client{Transport: tr}
	const base = "http://sbx-agent"
	opts := []connect.ClientOption{connect.WithReadMaxBytes(maxMessageBytes), connect.WithAcceptCompression("gzip", nil, nil), connect.WithCodec(wireCodec)}
	streams, streamsTr := newStreamClient(dial, base, opts)
	return &Client{
		transport: tr,
		agent:     agentv1connect.NewAgentServiceClient(hc, base, opts...),
		proc:      agentv1connect.NewProcessServiceClient(hc, base, opts...),
		fs:        agentv1connect.NewFilesystemServiceClient(hc, base, opts...),
		streams:   streams,
		streamsTr: streamsTr,
	}
}

// dialBeneath connects to stateDir/SocketName as DialState describes.
func dialBeneath(ctx context.Context, stateDir string, verify func(int) error) (net.Conn, error) {
	dirfd, err := openStateDir(stateDir)
	if err != nil {
		return nil, err
	}
	pfd, err := openPathBeneath(dirfd, SocketName)
	unix.Close(dirfd)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: stateDir + "/" + SocketName, Err: err}
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("%s/%s is not a socket (mode %#o)", stateDir, SocketName, st.Mode&unix.S_IFMT)
	}
	// connect(2) through the O_PATH descriptor reaches the inode checked
	// above, whatever the name points to by now.
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", "/proc/self/fd/"+strconv.Itoa(pfd))
	if err != nil {
		return nil, err
	}
	pid, err := peerPID(conn)
	if err == nil {
		err = verify(pid)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("refusing the agent socket in %s: %w", stateDir, err)
	}
	return conn, nil
}

// peerPID returns the pid of the process that listened on conn's peer.
func peerPID(conn net.Conn) (int, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return 0, errors.New("not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", credErr)
	}
	return int(cred.Pid), nil
}

// WaitReady polls until the agent answers, or ctx ends: every millisecond
// for the first 100 tries (an agent starting up answers within a few), then
// backing off to 50 ms. Once it answered, the connection for the event
// streams is opened in the background (prepareStreams).
func (c *Client) WaitReady(ctx context.Context) error {
	if err := c.waitReady(ctx); err != nil {
		return err
	}
	c.prepareStreams()
	return nil
}

// WaitStarting is WaitReady for a fresh agent that an Init follows at once
// (a runtime's Create, then Start): the connection for the event streams
// is opened once the Init succeeded, not before, so that the agent's first
// moments after its answer go to the Init rather than to accepting that
// connection and answering its first call.
func (c *Client) WaitStarting(ctx context.Context) error { return c.waitReady(ctx) }

func (c *Client) waitReady(ctx context.Context) error {
	delay := time.Millisecond
	var why error // the last failure that was not the deadline itself
	for i := 0; ; i++ {
		_, err := c.agent.Ping(ctx, connect.NewRequest(&agentv1.PingRequest{}))
		if err == nil {
			return nil
		}
		if ctx.Err() == nil || why == nil {
			why = err
		}
		select {
		case <-ctx.Done():
			// Report why the agent did not answer (a refused peer, a
			// missing socket), not the deadline that cut the last try.
			return sandbox.Unavailable(sandbox.ReasonAgentUnavailable, "the sandbox agent did not answer in time; see the sandbox's log: %w", why)
		case <-time.After(delay):
		}
		if i >= 100 && delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}

// Init applies spec once per sandbox; a second call is FailedPrecondition.
// After a successful Init the connection for the event streams is opened
// in the background, if it was not yet (WaitStarting).
func (c *Client) Init(ctx context.Context, spec InitSpec) error {
	_, err := c.agent.Init(ctx, connect.NewRequest(&agentv1.InitRequest{Image: imageToWire(spec.Image), Start: startToWire(spec.Start)}))
	if err != nil {
		return fromWire(err, "start the sandbox")
	}
	c.prepareStreams()
	return nil
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
	c.streamsTr.CloseIdleConnections()
	return nil
}
