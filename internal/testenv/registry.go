package testenv

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Registry starts an in-memory OCI registry (go-containerregistry's
// pkg/registry) over plain HTTP on 127.0.0.1 with a random port, stopped
// when the test ends, and returns its host, "127.0.0.1:PORT".
func Registry(t testing.TB) string {
	t.Helper()
	return RegistryWith(t, nil)
}

// RegistryWith is Registry with the registry's handler wrapped by wrap (when
// not nil), for tests that count requests or inject faults such as truncated
// blobs or wrong digests.
func RegistryWith(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	h := newRegistryHandler()
	if wrap != nil {
		h = wrap(h)
	}
	host, stop, err := serve("127.0.0.1:0", h)
	if err != nil {
		t.Fatalf("start test registry: %v", err)
	}
	t.Cleanup(stop)
	return host
}

// ServeRegistry serves an in-memory OCI registry over plain HTTP on addr
// ("127.0.0.1:0" picks a free port) until stop is called, and returns the
// host it listens on. It is for programs outside tests, such as an
// end-to-end harness or a demo that needs a registry without the internet.
// opts are passed to registry.New (for example registry.WithBlobHandler to
// keep blobs on disk); the default logs nothing.
func ServeRegistry(addr string, opts ...registry.Option) (host string, stop func(), err error) {
	return serve(addr, newRegistryHandler(opts...))
}

func newRegistryHandler(opts ...registry.Option) http.Handler {
	return registry.New(append([]registry.Option{registry.Logger(log.New(io.Discard, "", 0))}, opts...)...)
}

func serve(addr string, h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("test registry on %s: %v", ln.Addr(), err)
		}
	}()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	}
	return ln.Addr().String(), stop, nil
}
