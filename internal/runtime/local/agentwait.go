package local

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// agentStart is the host's side of the agent's start protocol for one
// Create (internal/agent/start.go): a connected socket pair whose sandbox
// end the OCI runtime passes to the agent (crun and runc --preserve-fds),
// so that the host sends its first request before the agent listens and
// hears the answer the moment the agent serves, without polling. Under
// runsc, which passes no descriptor to a sandbox process, host is nil and
// the host finds the agent by its socket, as a restarted server does.
type agentStart struct {
	host  net.Conn
	agent *os.File
}

// newAgentStart makes the pair for a container of spec and tells the agent
// (spec's args) which descriptor holds its end: the first after stdio. It
// also gives the agent its start environment (agent.StartEnv).
func (r *Runtime) newAgentStart(spec *specs.Spec) (*agentStart, error) {
	spec.Process.Env = append(spec.Process.Env, agent.StartEnv...)
	if r.oci.name == "runsc" {
		return &agentStart{}, nil
	}
	host, end, err := agent.StartPair()
	if err != nil {
		return nil, sandbox.Internal("agent start connection: %w", err)
	}
	spec.Process.Args = append(spec.Process.Args, "--"+agent.ConnFlag+"="+strconv.Itoa(3))
	return &agentStart{host: host, agent: end}, nil
}

// extraFiles returns what the OCI runtime passes to the container's PID 1
// after stdio.
func (s *agentStart) extraFiles() []*os.File {
	if s.agent == nil {
		return nil
	}
	return []*os.File{s.agent}
}

// closeAgentEnd closes the host's copy of the agent's end once the runtime
// passed it on: from then on the host's end reads EOF as soon as the agent
// is gone.
func (s *agentStart) closeAgentEnd() {
	if s.agent != nil {
		s.agent.Close()
		s.agent = nil
	}
}

// close closes what no client took; idempotent.
func (s *agentStart) close() {
	s.closeAgentEnd()
	if s.host != nil {
		s.host.Close()
		s.host = nil
	}
}

// waitAgent returns once the agent answers; it gives up when the container
// exits, ctx ends or timeout passes. With a start connection the first
// request goes over it; otherwise the agent is found by its socket.
func (r *Runtime) waitAgent(ctx context.Context, b *box, rec record, timeout time.Duration, start *agentStart) error {
	dir := b.dir
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start.closeAgentEnd()
	died := make(chan struct{})
	go func() {
		// Ends with ctx (when waitAgent returns) at the latest.
		if waitExited(ctx, rec.PID, rec.PIDStart, timeout) {
			close(died)
			cancel()
		}
	}()
	// The client that saw the agent answer stays the sandbox's: its
	// connection serves the first exec without another handshake.
	c := b.agentClient(rec)
	if start.host != nil {
		closeUnused := c.UseConn(start.host)
		start.host = nil
		defer closeUnused()
	} else {
		// Watch for the socket at a fine grain first: the agent listens a
		// few milliseconds after it starts, and the client's own backoff is
		// coarser.
		sock := socketIn(b.state)
		for i := 0; ; i++ {
			if _, err := os.Lstat(sock); err == nil || ctx.Err() != nil || i > 2000 {
				break
			}
			time.Sleep(500 * time.Microsecond)
		}
	}
	// Start (lifecycle.go) follows with the Init, which then opens the
	// connection for the first exec's events (Client.WaitStarting).
	err := c.WaitStarting(ctx)
	if err == nil {
		return nil
	}
	select {
	case <-died:
		return sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonAgentUnavailable,
			"the agent of sandbox %q exited before it answered: %s", rec.ID, tail(filepath.Join(dir, "console.log"), 2048))
	default:
	}
	return sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonAgentUnavailable, "the agent of sandbox %q did not answer within %s: %w", rec.ID, timeout, err)
}
