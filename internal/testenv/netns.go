package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/sbx-run/sbx/internal/osthread"
)

// InNetns runs fn on an OS thread switched into the network namespace at
// path (e.g. /run/netns/NAME), then switches the thread back. Sockets fn
// creates belong to that namespace for good, so a listener or connection
// made in fn can be used from anywhere afterwards. Should the way back
// fail, the thread stays locked and Go ends it with the goroutine.
func InNetns(path string, fn func() error) error {
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer target.Close()
	return osthread.InNetns(target, fn)
}

// ListenIn listens on addr ("tcp") inside the network namespace at path.
func ListenIn(path, addr string) (net.Listener, error) {
	var ln net.Listener
	err := InNetns(path, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// DialerIn returns a DialContext that connects from inside the network
// namespace at path: the socket is made there, the connection then
// works like any other.
func DialerIn(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := InNetns(path, func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// HTTPClientIn returns an HTTP client whose connections are made inside
// the network namespace at path (HTTP/1.1 and unencrypted HTTP/2).
func HTTPClientIn(path string) *http.Client {
	t := &http.Transport{DialContext: DialerIn(path), MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	t.Protocols = &p
	return &http.Client{Transport: t}
}

// ServeRegistryIn serves one in-memory OCI registry on 127.0.0.1 both in
// the current network namespace (rootHost, to push to) and in the one at
// path (nsHost, for a server running there), until stop is called.
func ServeRegistryIn(path string) (rootHost, nsHost string, stop func(), err error) {
	h := newRegistryHandler()
	rootHost, stopRoot, err := serve("127.0.0.1:0", h)
	if err != nil {
		return "", "", nil, err
	}
	ln, err := ListenIn(path, "127.0.0.1:0")
	if err != nil {
		stopRoot()
		return "", "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return rootHost, ln.Addr().String(), func() { srv.Close(); stopRoot() }, nil
}
