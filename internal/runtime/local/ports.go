package local

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"

	"github.com/sbx-run/sbx/internal/sandbox"
)

var _ sandbox.PortDialer = (*Runtime)(nil)

// DialPort connects to port inside sandbox id over the sandbox network; the
// host may always connect to its sandboxes (see internal/network), so this
// is what sbx's port proxy and port-forward use. Without a network (serve
// --network none) it is NotFound.
func (r *Runtime) DialPort(ctx context.Context, id string, port int) (net.Conn, error) {
	if port < 1 || port > 65535 {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "port %d is out of range: give 1-65535", port)
	}
	addr, ok := r.Address(id)
	if !ok {
		return nil, sandbox.NotFound(sandbox.ReasonSandboxNotFound, "sandbox %q has no network address: it is not running, or the server runs without sandbox networking", id)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(addr, uint16(port)).String())
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, sandbox.Unavailable(sandbox.ReasonPortNotListening, "nothing listens on port %d in sandbox %s: start a server there that listens on 0.0.0.0:%d", port, id, port)
		}
		return nil, sandbox.Unavailable(sandbox.ReasonPortNotListening, "cannot connect to port %d in sandbox %s: %v", port, id, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return c, nil
}
