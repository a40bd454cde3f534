package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"

	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/proxy"
	"github.com/sbx-run/sbx/internal/runtime/local"
)

// validateProxy checks the published ports' settings.
func (c *Config) validateProxy() error {
	if c.ProxyDomain == "" {
		c.ProxyDomain = proxy.DefaultDomain
	}
	d := strings.TrimSuffix(c.ProxyDomain, ".")
	if len(d) > 200 || strings.ContainsAny(d, "/:@ *") || strings.HasPrefix(d, ".") || d == "" {
		return fmt.Errorf("proxy domain %q is not a DNS name such as localhost or sbx.example.com", c.ProxyDomain)
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("public URL %q is not the API's URL such as http://sbx.example.com:7420", c.PublicURL)
		}
	}
	return nil
}

// publicURL is the API's URL as users reach it: PublicURL, else built from
// the listen address, with an unspecified host shown as localhost.
func (c *Config) publicURL(ln net.Addr) string {
	if c.PublicURL != "" {
		return strings.TrimSuffix(c.PublicURL, "/")
	}
	scheme := "http://"
	if c.TLSCertFile != "" {
		scheme = "https://"
	}
	host, port, err := net.SplitHostPort(ln.String())
	if err != nil {
		return scheme + ln.String()
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return scheme + net.JoinHostPort(host, port)
}

// newProxy returns the port proxy; it can reach sandboxes only with bridge
// networking.
func (c *Config) newProxy(mgr *lifecycle.Manager, authn *auth.Authenticator, lrt *local.Runtime, ln net.Addr, log *slog.Logger) (*proxy.Proxy, error) {
	pc := proxy.Config{
		Sandboxes: mgr,
		Auth:      authn,
		Domain:    c.ProxyDomain,
		APIURL:    c.publicURL(ln),
		Logger:    log,
	}
	if c.Network == "bridge" {
		pc.Dialer = lrt
	}
	return proxy.New(pc)
}
