package sbx

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// Port publishes a TCP port of the sandbox through the server's proxy. A
// Port is itself a RunOption; give one per port:
//
//	sbx.Run(ctx, sbx.Port{Port: 8080}, sbx.Port{Port: 9000, Public: true})
//
// The server needs sandbox networking (`sbx serve --network bridge`) and
// accepts at most 32 distinct ports, each 1-65535.
type Port struct {
	// Port is the TCP port inside the sandbox.
	Port int
	// Public ports are reachable without an API key at an unguessable URL;
	// private ones (the default) need the owner's API key.
	Public bool
}

func (p Port) applyRun(c *runConfig) { c.ports = append(c.ports, p) }

// ExposedPort is a published port and where to reach it.
type ExposedPort struct {
	Port   int
	Public bool
	// URL is the host form: http://<port>-<sandbox-id>.<domain>[:port]/ for
	// a private port (send the API key as "Authorization: Bearer <key>", or
	// as the password of HTTP basic auth), with "-<token>" after the id for
	// a public one.
	URL string
	// PathURL is the same port under the API address, for clients that
	// cannot resolve the host form: <api>/proxy/<sandbox-id>/<port>/.
	PathURL string
}

// maxPorts mirrors the server's bound, so that a bad option fails before
// the request is sent.
const maxPorts = 32

func portsToWire(ports []Port) ([]*sbxv1.PortSpec, error) {
	if len(ports) > maxPorts {
		return nil, errorf(ErrInvalidArgument, "INVALID_ARGUMENT", "ports: %d given, at most %d", len(ports), maxPorts)
	}
	seen := make(map[int]bool, len(ports))
	out := make([]*sbxv1.PortSpec, 0, len(ports))
	for i, p := range ports {
		if err := checkPort(fmt.Sprintf("ports[%d]", i), p.Port); err != nil {
			return nil, err
		}
		if seen[p.Port] {
			return nil, errorf(ErrInvalidArgument, "INVALID_ARGUMENT", "ports[%d]: port %d is given twice: give each port once", i, p.Port)
		}
		seen[p.Port] = true
		out = append(out, &sbxv1.PortSpec{Port: int32(p.Port), Public: p.Public})
	}
	return out, nil
}

func checkPort(field string, port int) error {
	if port < 1 || port > 65535 {
		return errorf(ErrInvalidArgument, "INVALID_ARGUMENT", "%s: port %d is out of range: give a TCP port from 1 to 65535", field, port)
	}
	return nil
}

func exposedPortFromWire(w *sbxv1.ExposedPort) ExposedPort {
	return ExposedPort{Port: int(w.GetPort()), Public: w.GetPublic(), URL: w.GetUrl(), PathURL: w.GetPathUrl()}
}

func exposedPortsFromWire(ws []*sbxv1.ExposedPort) []ExposedPort {
	if len(ws) == 0 {
		return nil
	}
	out := make([]ExposedPort, 0, len(ws))
	for _, w := range ws {
		out = append(out, exposedPortFromWire(w))
	}
	return out
}

// Ports returns the published ports that the last call saw (see Refresh).
func (s *Sandbox) Ports() []ExposedPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ExposedPort(nil), s.info.Ports...)
}

// ExposePort publishes a port of the sandbox (waiting until it runs), or
// changes its visibility, and returns where to reach it. Exposing a port again is
// harmless; a public port keeps its URL.
func (s *Sandbox) ExposePort(ctx context.Context, port int, public bool) (ExposedPort, error) {
	if err := checkPort("port", port); err != nil {
		return ExposedPort{}, err
	}
	if err := s.Wait(ctx); err != nil {
		return ExposedPort{}, err
	}
	resp, err := s.c.sandboxes.ExposePort(ctx, connect.NewRequest(&sbxv1.ExposePortRequest{
		SandboxId: s.ID(), Port: &sbxv1.PortSpec{Port: int32(port), Public: public},
	}))
	if err != nil {
		return ExposedPort{}, s.c.fromWire(err)
	}
	p := exposedPortFromWire(resp.Msg.GetPort())
	s.mu.Lock()
	s.info.Ports = upsertPort(s.info.Ports, p)
	s.mu.Unlock()
	return p, nil
}

// UnexposePort stops publishing a port; proxied connections to it are
// closed. A port that is not published is fine.
func (s *Sandbox) UnexposePort(ctx context.Context, port int) error {
	if err := checkPort("port", port); err != nil {
		return err
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	_, err := s.c.sandboxes.UnexposePort(ctx, connect.NewRequest(&sbxv1.UnexposePortRequest{SandboxId: s.ID(), Port: int32(port)}))
	if err != nil {
		return s.c.fromWire(err)
	}
	s.mu.Lock()
	s.info.Ports = removePort(s.info.Ports, port)
	s.mu.Unlock()
	return nil
}

func upsertPort(ports []ExposedPort, p ExposedPort) []ExposedPort {
	out := removePort(ports, p.Port)
	return append(out, p)
}

func removePort(ports []ExposedPort, port int) []ExposedPort {
	out := make([]ExposedPort, 0, len(ports))
	for _, q := range ports {
		if q.Port != port {
			out = append(out, q)
		}
	}
	return out
}

// DialOption configures DialPort.
type DialOption func(*dialConfig)

type dialConfig struct{ tls *tls.Config }

// DialTLSConfig sets the TLS configuration DialPort uses for an https://
// server (e.g. a private CA); by default it verifies against the system's
// roots. Set it when the Client's own HTTP client has a custom TLS setup.
func DialTLSConfig(cfg *tls.Config) DialOption { return func(c *dialConfig) { c.tls = cfg } }

// DialPort opens a raw TCP connection to a port of the sandbox through the
// server (what `sbx port-forward` uses), waiting until the sandbox runs. The port need not be published;
// the API key is always required. ctx bounds only the dial and the
// handshake, not the connection's life.
func (s *Sandbox) DialPort(ctx context.Context, port int, opts ...DialOption) (net.Conn, error) {
	if err := s.Wait(ctx); err != nil {
		return nil, err
	}
	return s.c.DialPort(ctx, s.ID(), port, opts...)
}

// maxUpgradeErrorBody bounds the error text we read from a refused upgrade.
const maxUpgradeErrorBody = 4 << 10

// DialPort opens a raw TCP connection to a port of sandbox id; see
// Sandbox.DialPort.
//
// It sends "GET /proxy-tcp/<id>/<port>" with "Upgrade: sbx-tcp" over
// HTTP/1.1 (TLS for https:// URLs) and, on "101 Switching Protocols",
// returns the connection, which then carries the port's bytes both ways.
func (c *Client) DialPort(ctx context.Context, id string, port int, opts ...DialOption) (net.Conn, error) {
	if id == "" {
		return nil, errorf(ErrInvalidArgument, "INVALID_ARGUMENT", "no sandbox id given")
	}
	if err := checkPort("port", port); err != nil {
		return nil, err
	}
	var cfg dialConfig
	for _, o := range opts {
		o(&cfg)
	}
	base, err := url.Parse(c.url)
	if err != nil {
		return nil, errorf(ErrInvalidArgument, "INVALID_URL", "server URL %q: %v", c.url, err)
	}
	addr := base.Host
	if base.Port() == "" {
		if base.Scheme == "https" {
			addr = net.JoinHostPort(base.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(base.Hostname(), "80")
		}
	}
	network := "tcp"
	if c.socket != "" {
		network, addr = "unix", c.socket
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, c.dialError(ctx, err)
	}
	// ctx bounds the handshake: closing the connection unblocks any read
	// or write in progress when it ends.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	conn, err := c.upgrade(ctx, raw, base, id, port, cfg)
	if !stop() || err != nil {
		raw.Close()
		if err == nil || ctx.Err() != nil {
			return nil, c.dialError(ctx, ctx.Err())
		}
		return nil, err
	}
	return conn, nil
}

func (c *Client) upgrade(ctx context.Context, raw net.Conn, base *url.URL, id string, port int, cfg dialConfig) (net.Conn, error) {
	conn := raw
	if base.Scheme == "https" {
		tc := cfg.tls.Clone()
		if tc == nil {
			tc = &tls.Config{}
		}
		if tc.ServerName == "" {
			tc.ServerName = base.Hostname()
		}
		// The upgrade is an HTTP/1.1 mechanism; HTTP/2 has none.
		tc.NextProtos = []string{"http/1.1"}
		t := tls.Client(raw, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			return nil, c.dialError(ctx, err)
		}
		conn = t
	}
	u := *base
	u.Path = strings.TrimRight(base.Path, "/") + "/proxy-tcp/" + url.PathEscape(id) + "/" + strconv.Itoa(port)
	u.RawPath = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, errorf(ErrInvalidArgument, "INVALID_ARGUMENT", "sandbox id %q: %v", id, err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "sbx-tcp")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	if err := req.Write(conn); err != nil {
		return nil, c.dialError(ctx, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, c.dialError(ctx, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxUpgradeErrorBody))
		return nil, upgradeError(resp, strings.TrimSpace(string(body)), id, port)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "sbx-tcp") {
		return nil, errorf(ErrInternal, "", "the server at %s answered the port-forward upgrade with protocol %q, not sbx-tcp: is it an sbx server of this version?", c.url, resp.Header.Get("Upgrade"))
	}
	// Bytes the server sent right after the 101 sit in br: read through it.
	return &upgradedConn{Conn: conn, r: br}, nil
}

// upgradeError maps a refused upgrade's HTTP status to an error kind, with
// the server's one-line text as the message.
func upgradeError(resp *http.Response, text, id string, port int) error {
	kind := ErrInternal
	switch resp.StatusCode {
	case http.StatusBadRequest:
		kind = ErrInvalidArgument
	case http.StatusUnauthorized:
		kind = ErrUnauthenticated
		if text == "" {
			text = "the server refused the API key: set " + EnvAPIKey + " or check " + DefaultCredentialsPath()
		}
	case http.StatusForbidden:
		kind = ErrPermissionDenied
	case http.StatusNotFound:
		kind = ErrNotFound
	case http.StatusConflict, http.StatusPreconditionFailed:
		kind = ErrFailedPrecondition
	case http.StatusTooManyRequests:
		kind = ErrResourceExhausted
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		kind = ErrUnavailable
	case http.StatusGatewayTimeout:
		kind = ErrDeadlineExceeded
	}
	if text == "" {
		text = fmt.Sprintf("port-forward to port %d of sandbox %s refused: HTTP %s", port, id, resp.Status)
	}
	e := &Error{Kind: kind, Reason: resp.Header.Get("Sbx-Reason"), Message: text}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return e
}

// dialError wraps a transport error of DialPort like fromWire does for
// calls: unreachable server, cancel and deadline.
func (c *Client) dialError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return c.fromWire(ctxErr)
	}
	return &Error{Kind: ErrUnavailable, Reason: ReasonServerUnreachable, Err: err,
		Message: "cannot reach the sbx server at " + c.URL() + " (" + err.Error() + "): start it with `sbx serve`, or set " + EnvURL + " to its address"}
}

// upgradedConn is the connection after the 101, reading through the
// buffer that may hold the first bytes from the sandbox.
type upgradedConn struct {
	net.Conn
	r *bufio.Reader
}

func (u *upgradedConn) Read(p []byte) (int, error) { return u.r.Read(p) }

// CloseWrite half-closes the connection when the transport can (plain TCP),
// so that a client can signal EOF and still read the answer.
func (u *upgradedConn) CloseWrite() error {
	if cw, ok := u.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
