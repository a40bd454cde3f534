package server

import (
	"net/http"
	"testing"
	"time"
)

// TestHTTPServerIdleTimeout: the API server closes idle keep-alive
// connections, but only after the SDKs stop reusing them (the Go SDK's
// transport after 90 s, the Python SDK after 30 s), so a reused connection
// is not closed under a request.
func TestHTTPServerIdleTimeout(t *testing.T) {
	s := NewHTTPServer("127.0.0.1:0", http.NotFoundHandler())
	goIdle := http.DefaultTransport.(*http.Transport).IdleConnTimeout
	if s.IdleTimeout != IdleTimeout || IdleTimeout <= goIdle || IdleTimeout <= 30*time.Second {
		t.Fatalf("IdleTimeout %v (server %v); it must be set and longer than the SDKs' %v and 30s", IdleTimeout, s.IdleTimeout, goIdle)
	}
}
