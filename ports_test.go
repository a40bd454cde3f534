package sbx

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRunWithPorts(t *testing.T) {
	_, c := newFakeServer(t)
	ctx := context.Background()
	sb := runIdle(t, c, Port{Port: 9000, Public: true}, Port{Port: 8080})
	ports := sb.Ports()
	if len(ports) != 2 || ports[0].Port != 8080 || ports[0].Public || ports[1].Port != 9000 || !ports[1].Public {
		t.Fatalf("ports after Run: %+v", ports)
	}
	if want := "http://8080-" + sb.ID() + ".localhost/"; ports[0].URL != want {
		t.Errorf("private URL %q, want %q", ports[0].URL, want)
	}
	if !strings.Contains(ports[1].URL, "-tok.") || !strings.HasSuffix(ports[1].PathURL, "/proxy/"+sb.ID()+"/9000-tok/") {
		t.Errorf("public URLs %q %q", ports[1].URL, ports[1].PathURL)
	}
	if err := sb.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if sb.Info().Address == "" {
		t.Error("a running sandbox reports no address")
	}

	// Expose waits for the sandbox; exposing again changes visibility.
	p, err := sb.ExposePort(ctx, 8080, true)
	if err != nil || !p.Public || !strings.Contains(p.URL, "-tok.") {
		t.Fatalf("ExposePort 8080 public: %+v, %v", p, err)
	}
	if got := sb.Ports(); len(got) != 2 || !got[1].Public || got[1].Port != 8080 {
		t.Errorf("ports after re-expose: %+v", got)
	}
	if err := sb.UnexposePort(ctx, 9000); err != nil {
		t.Fatal(err)
	}
	info, err := sb.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Ports) != 1 || info.Ports[0].Port != 8080 {
		t.Errorf("ports from the server after unexpose: %+v", info.Ports)
	}
}

func TestPortsRejectedBeforeSending(t *testing.T) {
	f, c := newFakeServer(t)
	ctx := context.Background()
	for _, opts := range [][]RunOption{
		{Port{Port: 0}},
		{Port{Port: 70000}},
		{Port{Port: 80}, Port{Port: 80, Public: true}},
	} {
		_, err := c.Run(ctx, opts...)
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "ports[") {
			t.Errorf("Run(%v): got %v, want ErrInvalidArgument naming ports[i]", opts, err)
		}
	}
	many := make([]RunOption, 33)
	for i := range many {
		many[i] = Port{Port: 1000 + i}
	}
	if _, err := c.Run(ctx, many...); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("33 ports: got %v", err)
	}
	if f.Creates() != 0 {
		t.Errorf("%d creates reached the server", f.Creates())
	}
	sb := runIdle(t, c)
	if _, err := sb.ExposePort(ctx, -1, false); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("ExposePort(-1): %v", err)
	}
	if _, err := sb.DialPort(ctx, 65536); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("DialPort(65536): %v", err)
	}
}

func TestDialPortRoundTrip(t *testing.T) {
	f, c := newFakeServer(t)
	ctx := context.Background()
	sb := runIdle(t, c)
	conn, err := sb.DialPort(ctx, 8080)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := "hello through the tunnel\n"
	if _, err := io.WriteString(conn, msg); err != nil {
		t.Fatal(err)
	}
	conn.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != msg {
		t.Fatalf("echo: %q, %v", got, err)
	}
	if f.Dials() != 1 {
		t.Errorf("server saw %d upgrades", f.Dials())
	}

	_, err = c.DialPort(ctx, "sb-nope", 80)
	if !errors.Is(err, ErrNotFound) || ReasonOf(err) != "SANDBOX_NOT_FOUND" || !strings.Contains(err.Error(), "sb-nope") {
		t.Errorf("unknown sandbox: %v", err)
	}
	bad, err := NewClient(WithURL(c.URL()), WithAPIKey("wrong"), WithCredentialsFile("/nonexistent"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.DialPort(ctx, sb.ID(), 80); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("wrong key: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.DialPort(cancelled, sb.ID(), 80); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestDialPortUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := NewClient(WithURL("http://"+addr), WithCredentialsFile("/nonexistent"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.DialPort(context.Background(), "sb-1", 80)
	if !errors.Is(err, ErrUnavailable) || ReasonOf(err) != ReasonServerUnreachable {
		t.Fatalf("got %v, want ErrUnavailable %s", err, ReasonServerUnreachable)
	}
}

// TestDialPortTLSAndPrefix dials an https:// server mounted under a path
// prefix (as behind a reverse proxy), trusting its certificate through
// DialTLSConfig; the server sends its first bytes together with the 101.
func TestDialPortTLSAndPrefix(t *testing.T) {
	var gotPath, gotAuth string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotAuth = r.URL.Path, r.Header.Get("Authorization")
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: sbx-tcp\r\n\r\nbanner\n")
		rw.Flush()
		line, _ := rw.ReadString('\n')
		rw.WriteString(strings.ToUpper(line))
		rw.Flush()
	}))
	defer srv.Close()
	c, err := NewClient(WithURL(srv.URL+"/sbx/"), WithAPIKey("k"), WithCredentialsFile("/nonexistent"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.DialPort(ctx, "sb-1", 5432); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("untrusted certificate: got %v, want ErrUnavailable", err)
	}
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig
	conn, err := c.DialPort(ctx, "sb-1", 5432, DialTLSConfig(&tls.Config{RootCAs: roots.RootCAs}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if gotPath != "/sbx/proxy-tcp/sb-1/5432" || gotAuth != "Bearer k" {
		t.Errorf("request path %q auth %q", gotPath, gotAuth)
	}
	br := bufio.NewReader(conn)
	if l, _ := br.ReadString('\n'); l != "banner\n" {
		t.Errorf("first bytes %q, want the banner", l)
	}
	io.WriteString(conn, "ping\n")
	if l, _ := br.ReadString('\n'); l != "PING\n" {
		t.Errorf("answer %q", l)
	}
}
