package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// The fakes stand in for our own small interfaces (lifecycle's Lookup,
// auth, the runtime's dialer); every sandbox port is one loopback server.

type fakeSandboxes struct {
	mu  sync.Mutex
	sbs map[string]*sandbox.Sandbox
}

func (f *fakeSandboxes) Lookup(_ context.Context, id string) (*sandbox.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sbs[id]
	if !ok {
		return nil, sandbox.NotFound(sandbox.ReasonSandboxNotFound, "sandbox %q not found", id)
	}
	cp := *sb
	return &cp, nil
}

type fakeAuth map[string]string // key -> tenant

func (f fakeAuth) Authenticate(_ context.Context, h string) (string, error) {
	if t, ok := f[strings.TrimPrefix(h, "Bearer ")]; ok {
		return t, nil
	}
	return "", sandbox.Errorf(sandbox.ErrUnauthenticated, sandbox.ReasonUnauthenticated, "unknown key")
}

// fakeDialer sends every sandbox port to addr.
type fakeDialer struct{ addr string }

func (d fakeDialer) DialPort(ctx context.Context, id string, port int) (net.Conn, error) {
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", d.addr)
}

func (d fakeDialer) Address(id string) (netip.Addr, bool) {
	return netip.MustParseAddr("127.0.0.1"), true
}

const (
	keyA = "sbx_keya"
	keyB = "sbx_keyb"
)

type fixture struct {
	api      string // the proxy's URL
	upstream string // the "sandbox" server's URL
	prx      *Proxy
	sbs      *fakeSandboxes
	seen     chan http.Header
}

// newFixture starts an upstream that echoes what it got, and the proxy in
// front of an API handler that answers "api".
func newFixture(t testing.TB, upstream http.Handler) *fixture {
	t.Helper()
	f := &fixture{seen: make(chan http.Header, 100)}
	if upstream == nil {
		upstream = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case f.seen <- r.Header.Clone():
			default:
			}
			fmt.Fprintf(w, "path=%s host=%s", r.URL.RequestURI(), r.Host)
		})
	}
	up := httptest.NewServer(upstream)
	t.Cleanup(up.Close)
	f.upstream = up.URL
	f.sbs = &fakeSandboxes{sbs: map[string]*sandbox.Sandbox{
		"sb-a": {ID: "sb-a", TenantID: "ta", State: sandbox.StateRunning,
			Ports: []sandbox.Port{{Port: 8080}, {Port: 9090, Public: true, Token: tok}}},
		"sb-stopped": {ID: "sb-stopped", TenantID: "ta", State: sandbox.StateTerminated, Ports: []sandbox.Port{{Port: 8080}}},
	}}
	api := httptest.NewUnstartedServer(nil)
	var err error
	f.prx, err = New(Config{Sandboxes: f.sbs, Auth: fakeAuth{keyA: "ta", keyB: "tb"},
		Dialer: fakeDialer{strings.TrimPrefix(up.URL, "http://")}, APIURL: "http://localhost:7420"})
	if err != nil {
		t.Fatal(err)
	}
	api.Config.Handler = f.prx.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "api") }))
	api.Start()
	t.Cleanup(api.Close)
	t.Cleanup(f.prx.Close)
	f.api = api.URL
	return f
}

// get sends GET path with Host host (if set) and key (if set).
func (f *fixture) get(t testing.TB, host, path, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.api+path, nil)
	if host != "" {
		req.Host = host
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestAccessRules(t *testing.T) {
	f := newFixture(t, nil)
	for _, c := range []struct {
		name, host, path, key string
		status                int
		body                  string
	}{
		{"api untouched", "", "/x", "", 200, "api"},
		{"private host form", "8080-sb-a.localhost:7420", "/p?q=1", keyA, 200, "path=/p?q=1 host=8080-sb-a.localhost:7420"},
		{"private path form", "", "/proxy/sb-a/8080/p/q%2Fr?x=1", keyA, 200, "path=/p/q%2Fr?x=1"},
		{"private no key", "8080-sb-a.localhost", "/", "", 401, ""},
		{"private bad key", "8080-sb-a.localhost", "/", "sbx_nope", 401, ""},
		{"private other tenant", "8080-sb-a.localhost", "/", keyB, 404, ""},
		{"private missing sandbox", "8080-sb-zz.localhost", "/", keyA, 404, ""},
		{"private port not published", "8081-sb-a.localhost", "/", keyA, 404, ""},
		{"public via private form with key", "9090-sb-a.localhost", "/", keyA, 200, "path=/"},
		{"public with token", "9090-sb-a-" + tok + ".localhost", "/", "", 200, "path=/"},
		{"public path form", "", "/proxy/sb-a/9090-" + tok + "/z", "", 200, "path=/z"},
		{"public wrong token", "9090-sb-a-" + strings.Repeat("b", 26) + ".localhost", "/", "", 404, ""},
		{"token of a private port", "8080-sb-a-" + tok + ".localhost", "/", "", 404, ""},
		{"token on a missing sandbox", "9090-sb-zz-" + tok + ".localhost", "/", "", 404, ""},
		{"malformed label", "x-sb-a.localhost", "/", keyA, 404, ""},
		{"malformed path", "", "/proxy/sb-a/x/", keyA, 404, ""},
		{"not running", "8080-sb-stopped.localhost", "/", keyA, 502, "TERMINATED"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := f.get(t, c.host, c.path, c.key)
			if status != c.status || !strings.Contains(body, c.body) {
				t.Fatalf("got %d %q; want %d containing %q", status, body, c.status, c.body)
			}
			if status >= 400 && strings.Count(strings.TrimSpace(body), "\n") != 0 {
				t.Fatalf("error body is not one line: %q", body)
			}
		})
	}
	// No oracle: every kind of "not yours" reads the same.
	_, a := f.get(t, "8080-sb-a.localhost", "/", keyB)
	_, b := f.get(t, "8080-sb-zz.localhost", "/", keyA)
	_, c := f.get(t, "9090-sb-a-"+strings.Repeat("b", 26)+".localhost", "/", "")
	if a != b || b != c {
		t.Fatalf("404 bodies differ: %q %q %q", a, b, c)
	}
}

func TestPathFormRedirectsToSlash(t *testing.T) {
	f := newFixture(t, nil)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get(f.api + "/proxy/sb-a/9090-" + tok + "?a=b")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusPermanentRedirect || res.Header.Get("Location") != "/proxy/sb-a/9090-"+tok+"/?a=b" {
		t.Fatalf("got %d %q", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestCredentialsStrippedAndForwardedHeaders(t *testing.T) {
	f := newFixture(t, nil)
	for _, c := range []struct {
		name, host, auth string
	}{
		{"private bearer", "8080-sb-a.localhost", "Bearer " + keyA},
		{"private basic", "8080-sb-a.localhost", "Basic " + basic("u", keyA)},
		{"public with an sbx key", "9090-sb-a-" + tok + ".localhost", "Bearer " + keyA},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", f.api+"/", nil)
			req.Host = c.host
			req.Header.Set("Authorization", c.auth)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			h := <-f.seen
			if v := h.Get("Authorization"); v != "" {
				t.Fatalf("the sandbox saw Authorization %q", v)
			}
			if h.Get("X-Forwarded-Host") != c.host || h.Get("X-Forwarded-Proto") != "http" || h.Get("X-Forwarded-For") != "127.0.0.1" {
				t.Fatalf("forwarded headers %v", h)
			}
		})
	}
	// A public port's own app credentials are the app's business.
	req, _ := http.NewRequest("GET", f.api+"/", nil)
	req.Host = "9090-sb-a-" + tok + ".localhost"
	req.Header.Set("Authorization", "Bearer app-token")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if h := <-f.seen; h.Get("Authorization") != "Bearer app-token" {
		t.Fatalf("app credential not passed: %v", h)
	}
}

func basic(u, p string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(u, p)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func TestCloseConnsCutsStreams(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	f := newFixture(t, blockingHandler(block))
	br := openStream(t, f)
	f.prx.CloseConns("sb-a", 8080)
	if _, err := io.ReadAll(br); err == nil {
		t.Fatal("the stream ended cleanly after its port was cut; want an error")
	}
}

func TestRawTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.(*net.TCPConn).CloseWrite() }()
		}
	}()
	f := newFixture(t, nil)
	f.prx.cfg.Dialer = fakeDialer{ln.Addr().String()}

	if got := tcpStatus(t, f.api, "/proxy-tcp/sb-a/5432", ""); !strings.Contains(got, " 401 ") {
		t.Fatalf("no key: %q", got)
	}
	if got := tcpStatus(t, f.api, "/proxy-tcp/sb-a/5432", keyB); !strings.Contains(got, " 404 ") {
		t.Fatalf("other tenant: %q", got)
	}
	if got := tcpStatus(t, f.api, "/proxy-tcp/sb-stopped/5432", keyA); !strings.Contains(got, " 502 ") {
		t.Fatalf("stopped: %q", got)
	}
	c, br := dialTCP(t, f.api, "/proxy-tcp/sb-a/5432", keyA)
	defer c.Close()
	msg := strings.Repeat("hello through a tunnel ", 1000)
	go func() { io.WriteString(c, msg); c.(*net.TCPConn).CloseWrite() }()
	got, err := io.ReadAll(br)
	if err != nil || string(got) != msg {
		t.Fatalf("echo: %d bytes, err %v", len(got), err)
	}
}

// tcpStatus sends the upgrade request and returns the status line.
func tcpStatus(t testing.TB, api, path, key string) string {
	t.Helper()
	c, br := sendUpgrade(t, api, path, key)
	defer c.Close()
	l, _ := br.ReadString('\n')
	return l
}

func sendUpgrade(t testing.TB, api, path, key string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(api, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: sbx-tcp\r\n"
	if key != "" {
		req += "Authorization: Bearer " + key + "\r\n"
	}
	io.WriteString(c, req+"\r\n")
	return c, bufio.NewReader(c)
}

// dialTCP opens a tunnel and returns it past the 101 response.
func dialTCP(t testing.TB, api, path, key string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, br := sendUpgrade(t, api, path, key)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	return c, br
}

// Basic auth, which browsers cache per origin, works only on the host
// form: on the path form all sandboxes share the API's origin.
func TestBasicAuthOnlyOnHostForm(t *testing.T) {
	f := newFixture(t, nil)
	try := func(host, path string) *http.Response {
		req, _ := http.NewRequest("GET", f.api+path, nil)
		req.Host = host
		req.SetBasicAuth("", keyA)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := try("8080-sb-a.localhost", "/"); res.StatusCode != 200 {
		t.Fatalf("host form with basic auth: %d", res.StatusCode)
	}
	res := try("", "/proxy/sb-a/8080/")
	if res.StatusCode != 401 || res.Header.Get("WWW-Authenticate") != "" {
		t.Fatalf("path form with basic auth: %d %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
	if res := try("8080-sb-a.localhost", "/"); res.Header.Get("WWW-Authenticate") != "" {
		t.Fatal("WWW-Authenticate on a success")
	}
	req, _ := http.NewRequest("GET", f.api+"/", nil)
	req.Host = "8080-sb-a.localhost"
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Fatalf("host form without a key: %d %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
}

// Records are cached for a moment; Forget (what ExposePort and
// UnexposePort call) makes the next request see a change at once.
func TestForgetSeesChanges(t *testing.T) {
	f := newFixture(t, nil)
	if s, _ := f.get(t, "9090-sb-a-"+tok+".localhost", "/", ""); s != 200 {
		t.Fatalf("public: %d", s)
	}
	f.sbs.mu.Lock()
	f.sbs.sbs["sb-a"].Ports = []sandbox.Port{{Port: 8080}}
	f.sbs.mu.Unlock()
	f.prx.Forget("sb-a")
	if s, _ := f.get(t, "9090-sb-a-"+tok+".localhost", "/", ""); s != 404 {
		t.Fatalf("unpublished port after Forget: %d", s)
	}
	// A sandbox that ended while its record was cached answers as ended.
	if s, _ := f.get(t, "8080-sb-a.localhost", "/", keyA); s != 200 {
		t.Fatalf("private: %d", s)
	}
	f.sbs.mu.Lock()
	f.sbs.sbs["sb-a"].State = sandbox.StateCompleted
	f.sbs.mu.Unlock()
	f.prx.cfg.Dialer = fakeDialer{"127.0.0.1:1"} // nothing listens
	f.prx.tr.CloseIdleConnections()
	if s, body := f.get(t, "8080-sb-a.localhost", "/", keyA); s != 502 || !strings.Contains(body, "COMPLETED, not RUNNING") {
		t.Fatalf("ended sandbox: %d %q", s, body)
	}
}

// A sandbox that ends takes its proxied streams and tunnels with it: its
// namespace vanishes without a reset reaching the host.
func TestCloseSandboxCutsStreamsAndTunnels(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	f := newFixture(t, blockingHandler(block))
	br := openStream(t, f)
	f.prx.cfg.Dialer = fakeDialer{ln.Addr().String()}
	c, tbr := dialTCP(t, f.api, "/proxy-tcp/sb-a/5432", keyA)
	defer c.Close()
	io.WriteString(c, "ping\n")
	if l, _ := tbr.ReadString('\n'); l != "ping\n" {
		t.Fatalf("tunnel echo: %q", l)
	}

	f.prx.CloseSandbox("sb-other") // another sandbox: nothing happens
	io.WriteString(c, "still\n")
	if l, _ := tbr.ReadString('\n'); l != "still\n" {
		t.Fatalf("tunnel cut by another sandbox's end: %q", l)
	}
	f.prx.CloseSandbox("sb-a")
	if _, err := io.ReadAll(br); err == nil {
		t.Error("the stream ended cleanly after its sandbox ended; want an error")
	}
	if _, err := io.ReadAll(tbr); err != nil {
		t.Logf("tunnel: %v", err)
	}
}

// blockingHandler writes "start\n", flushes, then holds the response open
// until block is closed.
func blockingHandler(block chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "start\n")
		w.(http.Flusher).Flush()
		<-block
	})
}

// openStream makes a private request to sb-a's port 8080 through f's proxy
// and returns its body once "start\n" arrived; the body is closed at the
// end of the test.
func openStream(t *testing.T, f *fixture) *bufio.Reader {
	t.Helper()
	req, _ := http.NewRequest("GET", f.api+"/", nil)
	req.Host = "8080-sb-a.localhost"
	req.Header.Set("Authorization", "Bearer "+keyA)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	br := bufio.NewReader(res.Body)
	if l, _ := br.ReadString('\n'); l != "start\n" {
		t.Fatalf("got %q", l)
	}
	return br
}
