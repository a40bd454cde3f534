package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/server"
)

func TestUnixSocketConfig(t *testing.T) {
	c := Default()
	if got := c.unixSocketPath(); got != "/var/lib/sbx/api.sock" {
		t.Errorf("default socket %q", got)
	}
	c.ListenUnix = "none"
	if got := c.unixSocketPath(); got != "" || c.Validate() != nil {
		t.Errorf("none: %q %v", got, c.Validate())
	}
	c.ListenUnix = "/run/sbx/api.sock"
	if got := c.unixSocketPath(); got != "/run/sbx/api.sock" || c.Validate() != nil {
		t.Errorf("explicit: %q %v", got, c.Validate())
	}
	for _, bad := range []string{"api.sock", "/" + strings.Repeat("s", 110)} {
		c.ListenUnix = bad
		if err := c.Validate(); err == nil {
			t.Errorf("listenUnix %q: valid", bad)
		}
	}
}

// TestListenUnixStaleSocket: a socket a killed server left behind (nothing
// accepts on it) is replaced; the new one is mode 0666, and closing removes it.
func TestListenUnixStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "api.sock")
	os.MkdirAll(filepath.Dir(path), 0o755)
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close() // as kill -9 leaves it
	if _, err := os.Stat(path); err != nil {
		t.Fatal("no stale socket to test with:", err)
	}
	ln, closeFn, err := listenUnix(path)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o666 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket: %v %v", fi.Mode(), err)
	}
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	if c, err := net.Dial("unix", path); err != nil {
		t.Fatalf("dial the new socket: %v", err)
	} else {
		c.Close()
	}
	closeFn()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left after close: %v", err)
	}
	// And again: the lock was let go.
	_, closeFn, err = listenUnix(path)
	if err != nil {
		t.Fatalf("listen after close: %v", err)
	}
	closeFn()
}

// TestListenUnixRefuses: a second server, a live socket of another
// process, and a path that is no socket are refused, and left alone.
func TestListenUnixRefuses(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "api.sock")
	_, closeFn, err := listenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := listenUnix(path); err == nil || !strings.Contains(err.Error(), "another sbx serve") {
		t.Fatalf("second server: %v", err)
	}
	closeFn()

	live := filepath.Join(dir, "live.sock")
	other, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, _, err := listenUnix(live); err == nil || !strings.Contains(err.Error(), "already accepts") {
		t.Fatalf("live socket: %v", err)
	}
	if fi, err := os.Lstat(live); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("the live socket was touched: %v", err)
	}

	file := filepath.Join(dir, "file.sock")
	os.WriteFile(file, []byte("keep"), 0o600)
	if _, _, err := listenUnix(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Fatal("the regular file was changed")
	}
}

// TestServeUnixAndTCP serves one handler on TCP and the socket as Run
// does: HTTP/1.1 and h2c on the socket, a large body from a file (the
// sendfile path), and one connection bound shared by both listeners.
func TestServeUnixAndTCP(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("sbx-unix"), 1<<20) // 8 MiB
	file := filepath.Join(dir, "blob")
	os.WriteFile(file, data, 0o600)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(file)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", "8388608")
		io.Copy(w, f)
	})
	mux.HandleFunc("GET /proto", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })

	conns := newConnLimit(1)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "api.sock")
	ul, closeUnix, err := listenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	defer closeUnix()
	srv := server.NewHTTPServer("", mux)
	go srv.Serve(conns.wrap(tcp))
	go srv.Serve(conns.wrap(ul))
	defer srv.Close()

	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
	h1 := &http.Client{Transport: &http.Transport{DialContext: dial}, Timeout: 30 * time.Second}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{DialContext: dial, Protocols: &p, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}, Timeout: 30 * time.Second}
	get := func(c *http.Client, path string) string {
		t.Helper()
		resp, err := c.Get("http://localhost" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := get(h1, "/proto"); got != "HTTP/1.1" {
		t.Errorf("HTTP/1.1 over the socket: %q", got)
	}
	if got := get(h1, "/blob"); got != string(data) {
		t.Errorf("blob over the socket: %d bytes, want %d", len(got), len(data))
	}
	h1.CloseIdleConnections()
	if got := get(h2, "/proto"); got != "HTTP/2.0" {
		t.Errorf("h2c over the socket: %q", got)
	}
	h2.CloseIdleConnections()

	// The one slot taken on TCP: a socket connection waits for it.
	held, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(held, "GET /proto HTTP/1.1\r\nHost: x\r\n\r\n")
	buf := make([]byte, 64)
	if _, err := held.Read(buf); err != nil { // served: it holds the slot
		t.Fatal(err)
	}
	uc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	io.WriteString(uc, "GET /proto HTTP/1.1\r\nHost: x\r\n\r\n")
	uc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := uc.Read(buf); err == nil {
		t.Fatalf("served on the socket past the shared bound: %q", buf[:n])
	}
	held.Close()
	uc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := uc.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("not served after the TCP connection closed: %q %v", buf[:n], err)
	}
}
