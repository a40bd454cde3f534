// Package proxy publishes sandbox ports: an HTTP and WebSocket reverse
// proxy (net/http/httputil) reached by Host (http://<port>-<id>.<domain>/)
// or by path (<api>/proxy/<id>/<port>/), and a raw TCP endpoint
// (/proxy-tcp/<id>/<port>, an HTTP/1.1 upgrade) for port-forward. It serves
// on the API's own listener: Wrap routes its requests and hands every other
// one to the API.
//
// A private port needs the owning tenant's API key (Bearer, or HTTP basic
// auth with the key as password); a public one needs the token in its URL,
// compared in constant time. A missing sandbox, another tenant's, a port
// that is not published and a wrong token all get the same 404, so that a
// caller learns nothing about sandboxes that are not theirs. The caller's
// sbx credentials never reach the sandbox. Running sandboxes' records are
// cached for a second (cache.go); port changes made here clear them.
package proxy

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Sandboxes finds sandbox records whichever tenant owns them
// (lifecycle.Manager.Lookup).
type Sandboxes interface {
	Lookup(ctx context.Context, id string) (*sandbox.Sandbox, error)
}

// Authenticator resolves an "Authorization: Bearer <key>" value to its
// tenant (auth.Authenticator).
type Authenticator interface {
	Authenticate(ctx context.Context, header string) (string, error)
}

// Config is what a Proxy needs.
type Config struct {
	// Sandboxes and Auth are required.
	Sandboxes Sandboxes
	Auth      Authenticator
	// Dialer reaches sandbox ports; nil means the server runs without
	// sandbox networking, so no port can be published.
	Dialer sandbox.PortDialer
	// Domain is the base domain of host-form URLs ("localhost").
	Domain string
	// APIURL is the API's URL as users reach it ("http://localhost:7420"):
	// the base of path-form URLs, and the scheme and port of host-form ones.
	APIURL string
	// Logger receives proxy errors at debug level (slog.Default()).
	Logger *slog.Logger
}

// DefaultDomain is the base domain when none is configured: browsers and
// most resolvers send *.localhost to the loopback address.
const DefaultDomain = "localhost"

// Proxy serves published sandbox ports.
type Proxy struct {
	cfg   Config
	urls  urls
	conns *tracker
	cache recordCache
	rp    *httputil.ReverseProxy
	tr    *http.Transport
}

// New returns a Proxy, or an error naming the bad setting.
func New(cfg Config) (*Proxy, error) {
	if cfg.Sandboxes == nil || cfg.Auth == nil {
		return nil, errors.New("proxy: Sandboxes and Auth are required")
	}
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	u, err := newURLs(cfg.APIURL, cfg.Domain)
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, urls: u, conns: newTracker()}
	p.tr = &http.Transport{
		// Proxy stays nil: never an environment proxy, the upstream is a
		// sandbox.
		DialContext:         p.dial,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: p.tr,
		// FlushInterval 0: ReverseProxy flushes every write of responses
		// of unknown length and of server-sent events anyway.
		ErrorHandler: p.upstreamError,
		BufferPool:   bufferPool{},
		ErrorLog:     slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// Enabled reports whether ports can be published on this server.
func (p *Proxy) Enabled() bool { return p.cfg.Dialer != nil }

// URLs returns the host-form and path-form URLs of port of sandbox id.
func (p *Proxy) URLs(id string, port sandbox.Port) (hostURL, pathURL string) {
	tok := ""
	if port.Public {
		tok = port.Token
	}
	return p.urls.hostURL(id, port.Port, tok), p.urls.pathURL(id, port.Port, tok)
}

// Address returns a sandbox's address on the sandbox network, if any.
func (p *Proxy) Address(id string) (netip.Addr, bool) {
	if p.cfg.Dialer == nil {
		return netip.Addr{}, false
	}
	return p.cfg.Dialer.Address(id)
}

// Forget drops what the proxy remembers of sandbox id's record: call it
// after its ports changed.
func (p *Proxy) Forget(id string) { p.cache.forget(id) }

// CloseConns closes every proxied connection to port of sandbox id (and
// forgets its record): call it after the port was unpublished or changed
// visibility.
func (p *Proxy) CloseConns(id string, port int) {
	p.cache.forget(id)
	p.conns.cut(portKey{id, port})
}

// CloseSandbox closes every connection into sandbox id (it stopped or is
// stopping) and forgets its cached record.
func (p *Proxy) CloseSandbox(id string) {
	p.cache.forget(id)
	p.conns.closeSandbox(id)
}

// Close closes every connection the proxy holds (at server shutdown; the
// HTTP server does not see hijacked ones).
func (p *Proxy) Close() {
	p.conns.closeAll()
	p.tr.CloseIdleConnections()
}

// Wrap returns a handler that serves proxy requests (by Host, or under
// /proxy/ and /proxy-tcp/) and hands every other one to next.
func (p *Proxy) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if label, ok := hostLabel(r.Host, p.urls.domain, p.urls.apiHost); ok {
			t, ok := parseLabel(label)
			if !ok {
				notFound(w)
				return
			}
			t.Rest = r.URL.EscapedPath()
			p.serveHTTP(w, r, t)
			return
		}
		esc := r.URL.EscapedPath()
		switch {
		case strings.HasPrefix(esc, pathPrefix):
			t, ok := parsePath(esc)
			if !ok {
				notFound(w)
				return
			}
			if t.Rest == "" {
				// Relative links of the page must resolve under the prefix.
				to := t.Prefix + "/"
				if r.URL.RawQuery != "" {
					to += "?" + r.URL.RawQuery
				}
				http.Redirect(w, r, to, http.StatusPermanentRedirect)
				return
			}
			p.serveHTTP(w, r, t)
		case strings.HasPrefix(esc, tcpPrefix):
			p.serveTCP(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// serveHTTP checks the caller against t and proxies the request.
func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request, t target) {
	ctx := r.Context()
	var sb *sandbox.Sandbox
	if t.Token != "" {
		var ok bool
		if sb, ok = p.lookup(w, r, t.ID); !ok {
			return
		}
		pt, published := portOf(sb, t.Port)
		if !published || !pt.Public || pt.Token == "" || subtle.ConstantTimeCompare([]byte(pt.Token), []byte(t.Token)) != 1 {
			notFound(w)
			return
		}
		stripSbxCredentials(r.Header)
	} else {
		// Basic auth (what browsers cache) only on the host form, where
		// each port is an origin of its own: on the path form every
		// sandbox shares the API's origin, so a cached password would let
		// one sandbox's page read another's.
		tenant, ok := p.authenticate(w, r, t.Prefix == "")
		if !ok {
			return
		}
		if sb, ok = p.lookup(w, r, t.ID); !ok {
			return
		}
		if _, published := portOf(sb, t.Port); !published || sb.TenantID != tenant {
			notFound(w)
			return
		}
		// The key was for sbx; the sandbox must never see it.
		r.Header.Del("Authorization")
	}
	if !p.ready(w, sb) {
		return
	}
	ctx = p.conns.admit(ctx)
	ctx = context.WithValue(ctx, targetKey{}, t)
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

type targetKey struct{}

// rewrite points the outgoing request at the sandbox port.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	t := pr.In.Context().Value(targetKey{}).(target)
	pr.SetURL(&url.URL{Scheme: "http", Host: net.JoinHostPort(t.ID, strconv.Itoa(t.Port))})
	if t.Prefix != "" {
		// RawPath keeps escapes such as %2F as sent; url.URL uses it only
		// when it is a valid encoding of Path.
		pr.Out.URL.Path, _ = url.PathUnescape(t.Rest)
		pr.Out.URL.RawPath = t.Rest
		pr.Out.Header.Set("X-Forwarded-Prefix", t.Prefix)
	}
	pr.SetXForwarded()
	// The sandbox sees the Host the caller used, so that absolute links it
	// builds point back through the proxy.
	pr.Out.Host = pr.In.Host
}

// dial connects to "<id>:<port>" (the rewritten URL's host) and tracks the
// connection under its port.
func (p *Proxy) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, err
	}
	c, err := p.cfg.Dialer.DialPort(ctx, host, port)
	if err != nil {
		return nil, err
	}
	tc, ok := p.conns.add(ctx, portKey{host, port}, c)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("port %d of sandbox %s was unpublished", port, host)
	}
	return tc, nil
}

// upstreamError answers a request the sandbox could not take.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the caller left
	}
	p.cfg.Logger.Debug("proxy: upstream error", "host", r.Host, "path", r.URL.Path, "error", err)
	if t, ok := r.Context().Value(targetKey{}).(target); ok {
		// The cached record may be older than the sandbox's end: if it
		// ended, say so rather than what the dial saw.
		p.cache.forget(t.ID)
		if sb, lerr := p.cfg.Sandboxes.Lookup(r.Context(), t.ID); lerr == nil && !p.ready(w, sb) {
			return
		}
	}
	msg := err.Error()
	var se *sandbox.Error
	if errors.As(err, &se) {
		msg = se.Message
	}
	text(w, http.StatusBadGateway, "sandbox port unreachable: "+msg)
}

// lookup finds sandbox id; every failure to find it is the same 404.
func (p *Proxy) lookup(w http.ResponseWriter, r *http.Request, id string) (*sandbox.Sandbox, bool) {
	now := time.Now()
	if sb := p.cache.get(id, now); sb != nil {
		return sb, true
	}
	sb, err := p.cfg.Sandboxes.Lookup(r.Context(), id)
	switch {
	case err == nil:
		p.cache.put(sb, now)
		return sb, true
	case errors.Is(err, sandbox.ErrNotFound), errors.Is(err, sandbox.ErrInvalidArgument):
		notFound(w)
	default:
		p.cfg.Logger.Warn("proxy: sandbox lookup", "sandbox", id, "error", err)
		text(w, http.StatusServiceUnavailable, "sbx could not look up the sandbox; retry")
	}
	return nil, false
}

// authenticate resolves the caller's API key (a Bearer token, or with
// basic set the basic-auth password); without a valid one it answers 401,
// asking browsers for basic auth when basic is set.
func (p *Proxy) authenticate(w http.ResponseWriter, r *http.Request, basic bool) (string, bool) {
	key := credential(r, basic)
	if key == "" {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="sbx", charset="UTF-8"`)
		}
		msg := "this needs the API key of the sandbox's owner: send it as \"Authorization: Bearer <key>\""
		if basic {
			msg += " or as the basic-auth password"
		}
		text(w, http.StatusUnauthorized, msg)
		return "", false
	}
	tenant, err := p.cfg.Auth.Authenticate(r.Context(), "Bearer "+key)
	if err != nil {
		if errors.Is(err, sandbox.ErrUnauthenticated) {
			if basic {
				w.Header().Set("WWW-Authenticate", `Basic realm="sbx", charset="UTF-8"`)
			}
			text(w, http.StatusUnauthorized, "unknown API key: use the key of the tenant that owns the sandbox")
		} else {
			p.cfg.Logger.Warn("proxy: authenticate", "error", err)
			text(w, http.StatusServiceUnavailable, "sbx could not check the API key; retry")
		}
		return "", false
	}
	return tenant, true
}

// ready answers 502 unless the sandbox runs and the server can reach it.
func (p *Proxy) ready(w http.ResponseWriter, sb *sandbox.Sandbox) bool {
	switch {
	case p.cfg.Dialer == nil:
		text(w, http.StatusBadGateway, "this sbx server runs without sandbox networking (serve --network none): no port can be reached")
	case sb.State != sandbox.StateRunning:
		text(w, http.StatusBadGateway, fmt.Sprintf("sandbox %s is %s, not RUNNING: wait until it runs", sb.ID, sb.State))
	default:
		return true
	}
	return false
}

// credential returns the API key of a request: a Bearer token, or with
// basic set the password of HTTP basic auth (what a browser sends); "" if
// none.
func credential(r *http.Request, basic bool) string {
	h := r.Header.Get("Authorization")
	if k, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(k)
	}
	if _, pw, ok := r.BasicAuth(); ok && basic {
		return pw
	}
	return ""
}

// stripSbxCredentials removes an Authorization header that carries an sbx
// API key from a request to a public port; one meant for the sandbox's own
// app stays.
func stripSbxCredentials(h http.Header) {
	v := h.Get("Authorization")
	if v == "" {
		return
	}
	r := &http.Request{Header: h}
	if k := credential(r, true); strings.HasPrefix(k, "sbx_") {
		h.Del("Authorization")
	}
}

// portOf returns the published port of sb numbered port.
func portOf(sb *sandbox.Sandbox, port int) (sandbox.Port, bool) {
	for _, p := range sb.Ports {
		if p.Port == port {
			return p, true
		}
	}
	return sandbox.Port{}, false
}

func notFound(w http.ResponseWriter) {
	text(w, http.StatusNotFound, "no such published port: check the URL (sbx port lists them)")
}

// text writes a one-line plain-text answer.
func text(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

// copyBufferSize is the proxy's copy buffer: bigger than ReverseProxy's 32
// KiB default, which measurably helps large responses.
const copyBufferSize = 256 << 10

var buffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// bufferPool lends ReverseProxy its copy buffers.
type bufferPool struct{}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
