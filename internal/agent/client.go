package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/gen/sbx/agent/v1/agentpb"
	"github.com/sbx-run/sbx/internal/agentwire"
	"github.com/sbx-run/sbx/internal/protolite"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Client talks to one agent over its Unix socket, with the agent protocol
// (internal/agentwire). It implements sandbox.Agent; its errors are
// *sandbox.Error values.
type Client struct {
	wire *agentwire.Client
	// prepared makes prepare run once per client; preparing counts it in
	// flight (tests wait for it).
	prepared  sync.Once
	preparing sync.WaitGroup
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
// refused. It connects lazily.
func DialState(stateDir string, verify func(peerPID int) error) *Client {
	return newClient(func(ctx context.Context) (net.Conn, error) {
		return dialBeneath(ctx, stateDir, verify)
	})
}

func newClient(dial func(context.Context) (net.Conn, error)) *Client {
	return &Client{wire: agentwire.NewClient(dial, maxMessageBytes)}
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
// backing off to 50 ms. Once it answered, a second connection is opened in
// the background (prepare).
func (c *Client) WaitReady(ctx context.Context) error {
	if err := c.waitReady(ctx); err != nil {
		return err
	}
	c.prepare()
	return nil
}

// WaitStarting is WaitReady for a fresh agent that an Init follows at once
// (a runtime's Create, then Start): the second connection is opened once
// the Init succeeded, not before, so that the agent's first moments after
// its answer go to the Init rather than to accepting that connection.
func (c *Client) WaitStarting(ctx context.Context) error { return c.waitReady(ctx) }

func (c *Client) waitReady(ctx context.Context) error {
	delay := time.Millisecond
	var why error // the last failure that was not the deadline itself
	for i := 0; ; i++ {
		err := c.wire.Unary(ctx, methodPing, &agentpb.PingRequest{}, &agentpb.PingResponse{})
		if err == nil {
			return nil
		}
		if errors.Is(err, agentwire.ErrOldAgent) {
			return fromWire(err, "reach the sandbox agent")
		}
		// A dial cut by ctx's deadline may fail just before ctx says so.
		var ne net.Error
		cut := ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout())
		if !cut || why == nil {
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

// prepare opens a second connection in the background, once per client,
// once the agent answered (for a fresh agent: once it was initialized, see
// WaitStarting): the runtime's WaitMain holds one connection for the
// sandbox's life, and the first exec (often right after a warm hand-off)
// then finds another idle instead of dialing on its critical path.
func (c *Client) prepare() {
	c.prepared.Do(func() {
		c.preparing.Add(1)
		go func() {
			defer c.preparing.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = c.wire.Prepare(ctx)
		}()
	})
}

// Init applies spec once per sandbox; a second call is FailedPrecondition.
// After a successful Init a second connection is opened in the background,
// if it was not yet (WaitStarting).
func (c *Client) Init(ctx context.Context, spec InitSpec) error {
	req := &agentpb.InitRequest{Image: imageToWire(spec.Image), Start: startToWire(spec.Start)}
	if err := c.wire.Unary(ctx, methodInit, req, &agentpb.InitResponse{}); err != nil {
		return fromWire(err, "start the sandbox")
	}
	c.prepare()
	return nil
}

// WaitMain blocks until the main command exits (for an idle sandbox: until
// the agent is told to stop) and returns how it ended.
func (c *Client) WaitMain(ctx context.Context) (sandbox.ExitStatus, error) {
	var res agentpb.WaitMainResponse
	if err := c.wire.Unary(ctx, methodWaitMain, &agentpb.WaitMainRequest{}, &res); err != nil {
		return sandbox.ExitStatus{}, fromWire(err, "wait for the main command")
	}
	return *exitFromWire(res.GetExit()), nil
}

// Logs streams the main command's output (stdout and stderr interleaved,
// reported as Stdout).
func (c *Client) Logs(ctx context.Context, opts sandbox.LogOptions) (sandbox.OutputStream, error) {
	if opts.Tail < 0 {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "log tail %d is negative; give 0 for all lines", opts.Tail)
	}
	const what = "read the sandbox log"
	call, err := c.open(ctx, methodLogs, &agentpb.LogsRequest{
		Tail: uint32(opts.Tail), Follow: opts.Follow, SinceUnixNano: sinceNano(opts.Since), Timestamps: opts.Timestamps,
	}, what)
	if err != nil {
		return nil, err
	}
	// The agent's first message (empty) says the log is open.
	if err := call.Recv(&agentpb.LogsResponse{}); err != nil {
		call.Close()
		if err == io.EOF {
			err = errEndedEarly
		}
		return nil, fromWire(err, what)
	}
	return &logStream{call: call}, nil
}

// errEndedEarly is the error of a call that ended before its first answer.
var errEndedEarly = errors.New("the agent ended the call without an answer")

// open starts a call of method with req, which it sends.
func (c *Client) open(ctx context.Context, method string, req protolite.Message, what string) (*agentwire.Call, error) {
	call, err := c.wire.Open(ctx, method)
	if err != nil {
		return nil, fromWire(err, what)
	}
	if err := call.Send(req); err != nil {
		call.Close()
		return nil, fromWire(err, what)
	}
	return call, nil
}

type logStream struct {
	call *agentwire.Call
}

func (l *logStream) Recv() (sandbox.Output, error) {
	for {
		var m agentpb.LogsResponse
		if err := l.call.Recv(&m); err != nil {
			if err == io.EOF {
				return sandbox.Output{}, io.EOF
			}
			return sandbox.Output{}, fromWire(err, "read the sandbox log")
		}
		if data := m.GetData(); len(data) > 0 {
			return sandbox.Output{Stream: sandbox.Stdout, Data: data, At: timeOfNano(m.GetUnixNano())}, nil
		}
	}
}

func (l *logStream) Close() error {
	l.call.Close()
	return nil
}

// Close releases idle connections; running processes are not affected.
func (c *Client) Close() error { return c.wire.Close() }
