// Package nstest holds what network tests share to build their own world
// of network namespaces: running code inside a namespace, HTTP servers and
// clients there. It is for tests only; nothing here touches the internet.
package nstest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// IP runs iproute2 for a test world's own scaffolding (the code under test
// never spawns it), failing the test on error.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// IPQuiet runs iproute2 and ignores failure, for cleanups.
func IPQuiet(args ...string) { exec.Command("ip", args...).Run() }

// Path is the path of the named namespace.
func Path(name string) string { return "/run/netns/" + name }

// InNS runs fn on a thread moved into the namespace at path ("" = the
// test's own). The thread stays locked and is discarded when fn returns.
func InNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// ServeHTTP serves "ok <local address>" on addr inside the namespace ns
// until the test ends.
func ServeHTTP(t testing.TB, ns, addr string) {
	t.Helper()
	var ln net.Listener
	if err := InNS(ns, func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatalf("listen %s in %q: %v", addr, ns, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(rw, "ok %s", r.Context().Value(http.LocalAddrContextKey))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// Get fetches http://addr/ from inside the namespace ns over a new
// connection.
func Get(ns string, addr netip.AddrPort) (string, error) {
	client := &http.Client{
		Timeout: 3 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
				var c net.Conn
				err := InNS(ns, func() (err error) {
					d := net.Dialer{Timeout: 2 * time.Second}
					c, err = d.DialContext(ctx, "tcp4", a)
					return err
				})
				return c, err
			},
		},
	}
	resp, err := client.Get("http://" + addr.String() + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Reach asserts that ns can fetch from addr and gets an answer from it.
func Reach(t testing.TB, what, ns string, addr netip.AddrPort) {
	t.Helper()
	body, err := Get(ns, addr)
	if err != nil {
		t.Errorf("%s: %s should be reachable: %v", what, addr, err)
		return
	}
	if !strings.Contains(body, addr.String()) {
		t.Errorf("%s: %s answered %q", what, addr, body)
	}
}

// Blocked asserts that ns cannot fetch from addr. A world's targets all
// have a server listening, so any error means the firewall stopped it.
func Blocked(t testing.TB, what, ns string, addr netip.AddrPort) {
	t.Helper()
	if body, err := Get(ns, addr); err == nil {
		t.Errorf("%s: %s should be blocked, but answered %q", what, addr, body)
	}
}
