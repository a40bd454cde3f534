package sbx

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbx-run/sbx/cmd/sbx/fakeapi"
)

// unixFront listens on a Unix socket and relays every connection to the
// TCP address addr: the fake API behind a socket, as `sbx serve` serves
// the same handler on both.
func unixFront(t *testing.T, addr string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close() // idle keep-alive connections would stay for 90 s
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, b)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(b, c); b.(*net.TCPConn).CloseWrite() }()
			go func() { defer wg.Done(); io.Copy(c, b); c.Close(); b.Close() }()
		}
	}()
	return path
}

func TestParseUnixURL(t *testing.T) {
	for u, want := range map[string]string{
		"unix:///run/sbx/api.sock":    "/run/sbx/api.sock",
		"unix:///run/sbx/../api.sock": "/run/api.sock",
	} {
		if got, ok, err := parseUnixURL(u); err != nil || !ok || got != want {
			t.Errorf("%s: %q %v %v, want %q", u, got, ok, err, want)
		}
	}
	if _, ok, err := parseUnixURL("http://127.0.0.1:7420"); ok || err != nil {
		t.Errorf("http URL: %v %v", ok, err)
	}
	for _, bad := range []string{"unix://run/api.sock", "unix://", "unix:///a?b", "unix:///" + strings.Repeat("d", 120)} {
		if _, err := NewClient(WithURL(bad), WithCredentialsFile("/nonexistent")); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want INVALID_URL", bad, err)
		}
	}
	if _, err := NewClient(WithURL("unix:///run/sbx/api.sock"), WithHTTPClient(http.DefaultClient)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("unix URL with WithHTTPClient: %v", err)
	}
	c, err := NewClient(WithURL("unix:///run/sbx/api.sock/"), WithCredentialsFile("/nonexistent"))
	if err != nil || c.URL() != "unix:///run/sbx/api.sock" || c.Transport() != "unix" || c.socket != "/run/sbx/api.sock" {
		t.Fatalf("unix URL: %v %q %q", err, c.URL(), c.Transport())
	}
}

// TestCredentialsFileSocket: a client whose URL comes from the credentials
// file uses the file's socket when it can connect to it, and TCP when the
// socket is gone or the URL was given.
func TestCredentialsFileSocket(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvConfigDir, dir)
	t.Setenv(EnvURL, "")
	t.Setenv(EnvAPIKey, "")
	path := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := WriteCredentials(DefaultCredentialsPath(), Credentials{URL: "http://127.0.0.1:9999", UnixSocket: path, APIKey: "k"}); err != nil {
		t.Fatal(err)
	}
	c, err := NewClient()
	if err != nil || c.Transport() != "unix" || c.URL() != "unix://"+path || c.apiKey != "k" {
		t.Fatalf("from the file: %v %q %q %q", err, c.Transport(), c.URL(), c.apiKey)
	}
	t.Setenv(EnvURL, "http://127.0.0.1:9999")
	if c, err = NewClient(); err != nil || c.Transport() != "tcp" || c.apiKey != "k" {
		t.Fatalf("explicit http URL: %v %q %q", err, c.Transport(), c.apiKey)
	}
	// The file's socket named as the URL is the file's server: its key goes.
	t.Setenv(EnvURL, "unix://"+path)
	if c, err = NewClient(); err != nil || c.Transport() != "unix" || c.apiKey != "k" {
		t.Fatalf("the file's socket as URL: %v %q %q", err, c.Transport(), c.apiKey)
	}
	t.Setenv(EnvURL, "unix:///elsewhere.sock")
	if c, err = NewClient(); err != nil || c.apiKey != "" {
		t.Fatalf("another socket got the file's key: %v %q", err, c.apiKey)
	}
	t.Setenv(EnvURL, "")
	if c, err = NewClient(WithHTTPClient(http.DefaultClient)); err != nil || c.Transport() != "tcp" {
		t.Fatalf("own HTTP client: %v %q", err, c.Transport())
	}
	ln.Close() // the listener removes the socket file
	if c, err = NewClient(); err != nil || c.Transport() != "tcp" || c.URL() != "http://127.0.0.1:9999" {
		t.Fatalf("socket gone: %v %q %q", err, c.Transport(), c.URL())
	}
	os.WriteFile(path, nil, 0o666) // not a socket
	if c, err = NewClient(); err != nil || c.Transport() != "tcp" {
		t.Fatalf("file, not socket: %v %q", err, c.Transport())
	}
}

// TestClientOverUnixSocket: calls, streams (exec with stdin), file
// transfers, and gRPC over h2c, all through a unix:// URL.
func TestClientOverUnixSocket(t *testing.T) {
	_, url := fakeapi.Start(t)
	path := unixFront(t, strings.TrimPrefix(url, "http://"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, grpc := range []bool{false, true} {
		opts := []ClientOption{WithURL("unix://" + path), WithAPIKey(fakeapi.Key), WithCredentialsFile("/nonexistent")}
		if grpc {
			opts = append(opts, WithGRPC())
		}
		c, err := NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := c.Run(ctx)
		if err != nil {
			t.Fatalf("grpc %v: Run: %v", grpc, err)
		}
		p, err := sb.Exec(ctx, []string{"cat"}, Stdin(), Check())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(p.Stdin, "over a socket")
		p.Stdin.Close()
		if res, err := p.Result(); err != nil || string(res.Stdout) != "over a socket" {
			t.Fatalf("grpc %v: exec: %q %v", grpc, res.Stdout, err)
		}
		data := []byte(strings.Repeat("s", 3<<20)) // past bulkMinBytes: the fake has no bulk endpoint, so the RPCs
		if err := sb.WriteFile(ctx, "/f", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := sb.ReadFile(ctx, "/f"); err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("grpc %v: read back %d bytes: %v", grpc, len(got), err)
		}
		if _, err := c.Get(ctx, "sb-missing"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("grpc %v: error mapping: %v", grpc, err)
		}
		// A port-forward's upgrade goes over the socket too.
		conn, err := sb.DialPort(ctx, 8080)
		if err != nil {
			t.Fatalf("grpc %v: DialPort: %v", grpc, err)
		}
		io.WriteString(conn, "tunnel")
		conn.(interface{ CloseWrite() error }).CloseWrite()
		if got, err := io.ReadAll(conn); err != nil || string(got) != "tunnel" {
			t.Fatalf("grpc %v: port echo %q %v", grpc, got, err)
		}
		conn.Close()
	}
	dead, err := NewClient(WithURL("unix://"+filepath.Join(t.TempDir(), "none.sock")), WithAPIKey("k"), WithCredentialsFile("/nonexistent"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dead.Get(ctx, "sb-x"); !errors.Is(err, ErrUnavailable) || ReasonOf(err) != ReasonServerUnreachable || !strings.Contains(err.Error(), "none.sock") {
		t.Fatalf("dead socket: %v", err)
	}
}

// TestBulkConnSendfileUnix: a file sent over a Unix-socket bulk
// connection goes by sendfile (sendSource takes it) and arrives whole.
func TestBulkConnSendfileUnix(t *testing.T) {
	data := []byte(strings.Repeat("0123456789abcdef", 300<<10))
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, sum := bulkSinkOn(t, "unix")
	if _, ok := c.Conn.(*net.UnixConn); !ok {
		t.Fatalf("bulk connection over %T", c.Conn)
	}
	lr := &io.LimitedReader{R: &bodyReader{r: f}, N: int64(len(data))}
	n, handled, err := c.sendSource(lr.R.(*bodyReader), lr)
	c.Close()
	if !handled || err != nil || n != int64(len(data)) || lr.N != 0 {
		t.Fatalf("sendSource: handled %v, %d bytes (%d left): %v", handled, n, lr.N, err)
	}
	if got := <-sum; got != sha256.Sum256(data) {
		t.Fatal("the other end read other bytes")
	}
}
