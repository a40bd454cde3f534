package image

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Image references come from tenants, and a pull makes the server send
// requests to the reference's registry host (and to wherever that registry
// redirects blob downloads). Without a bound, a tenant could point the
// server at the host's own services or at the private network behind it
// (server-side request forgery): go-containerregistry even picks plain HTTP
// for loopback and RFC 1918 hosts on its own. So the store's transport
// connects to a non-public address only for hosts the operator configured
// (mirrors, insecure and allowed registries, the HTTP proxy), and checks
// the address it actually connects to, after name resolution, so that a
// public name resolving to a private address (DNS rebinding) is refused too.

// guardedTransport returns the store's base HTTP transport: net/http's
// default one whose dials to non-public addresses fail unless trusted
// reports the dialled host (as written in the URL) trusted.
func guardedTransport(trusted func(host string) bool) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	plain := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	guarded := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		if trusted(addr) || trusted(host) {
			return plain.DialContext(ctx, network, addr)
		}
		d := *guarded
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return sandbox.Errorf(sandbox.ErrPermissionDenied, sandbox.ReasonRegistryNotAllowed,
					"registry host %s: cannot check the address %q it resolved to", host, address)
			}
			if ip := ap.Addr().Unmap(); !publicAddr(ip) {
				what := fmt.Sprintf("registry host %s resolves to %s, a", host, ip)
				if _, err := netip.ParseAddr(host); err == nil {
					what = fmt.Sprintf("registry address %s is a", host)
				}
				return sandbox.Errorf(sandbox.ErrPermissionDenied, sandbox.ReasonRegistryNotAllowed,
					"%s loopback, private or link-local address, which the server contacts only for registries its operator configured (--registry-mirror, --insecure-registry or --allowed-registry)", what)
			}
			return nil
		}
		return d.DialContext(ctx, network, addr)
	}
	return t
}

// cgnat is the shared address space of RFC 6598, private in practice.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// publicAddr reports whether ip is an address a registry on the internet
// may have: not loopback, private (RFC 1918, fc00::/7, RFC 6598),
// link-local (169.254.0.0/16, the cloud metadata address among them),
// unspecified or multicast.
func publicAddr(ip netip.Addr) bool {
	return ip.IsValid() && !ip.IsLoopback() && !ip.IsPrivate() && !ip.IsLinkLocalUnicast() &&
		!ip.IsLinkLocalMulticast() && !ip.IsInterfaceLocalMulticast() && !ip.IsMulticast() &&
		!ip.IsUnspecified() && !cgnat.Contains(ip)
}

// trustedHosts are the hosts the operator configured, which the store
// may reach at any address: mirror hosts, insecure and allowed registries,
// and the HTTP proxies of the server's environment (a proxy is dialled in
// place of the registry). Keys are hostKey()s of "host" or "host:port".
func trustedHosts(cfg Config) map[string]bool {
	m := map[string]bool{}
	for _, list := range cfg.Mirrors {
		for _, mirror := range list {
			if u, err := url.Parse(mirror); err == nil && u.Host != "" {
				m[hostKey(u.Host)] = true
			}
		}
	}
	for _, h := range cfg.Insecure {
		m[hostKey(h)] = true
	}
	for _, h := range cfg.AllowedRegistries {
		m[hostKey(h)] = true
	}
	for _, v := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
		p := os.Getenv(v)
		if p == "" {
			continue
		}
		if !strings.Contains(p, "://") {
			p = "http://" + p
		}
		if u, err := url.Parse(p); err == nil && u.Host != "" {
			m[hostKey(u.Host)] = true
			m[hostKey(u.Hostname())] = true
		}
	}
	return m
}
