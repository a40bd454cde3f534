package bench

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
)

// The harness's own HTTP requests (/metrics) go where the SDK's do: to a
// unix:// URL's socket, or over TCP.

var (
	unixClientsMu sync.Mutex
	unixClients   = map[string]*http.Client{}
)

// httpClientOf returns the HTTP client for a server URL: one that dials
// the socket of a unix:// URL, else http.DefaultClient.
func httpClientOf(url string) *http.Client {
	path, ok := strings.CutPrefix(url, "unix://")
	if !ok {
		return http.DefaultClient
	}
	unixClientsMu.Lock()
	defer unixClientsMu.Unlock()
	if c := unixClients[path]; c != nil {
		return c
	}
	var d net.Dialer
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "unix", path)
	}}}
	unixClients[path] = c
	return c
}

// httpBase is the base of request URLs for a server URL: http://localhost
// for a unix:// one.
func httpBase(url string) string {
	if strings.HasPrefix(url, "unix://") {
		return "http://localhost"
	}
	return strings.TrimSuffix(url, "/")
}
