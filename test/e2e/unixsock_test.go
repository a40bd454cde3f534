package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
)

// unixHTTP is a plain HTTP client of the API's Unix socket at path.
func unixHTTP(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

// fileRPCs is how many ReadFile and WriteFile RPCs the server counted.
func fileRPCs(t *testing.T, hc *http.Client) int {
	t.Helper()
	resp, err := hc.Get("http://localhost/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n := 0
	for _, m := range regexp.MustCompile(`(?m)^sbx_api_requests_total\{[^}]*procedure="SandboxService/(?:ReadFile|WriteFile)"[^}]*\} (\d+)$`).FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}

// TestUnixSocket drives the real server over its Unix socket
// (<data-dir>/api.sock): the credentials file names it, RPCs and exec
// streams over Connect and gRPC, bulk transfers (no file RPC counted), the
// same auth and tenancy as TCP; and after a kill -9 the stale socket is
// replaced at the next start.
func TestUnixSocket(t *testing.T) {
	s := startServer(t)
	sock := filepath.Join(s.dataDir, "api.sock")
	creds, err := sbx.ReadCredentials(filepath.Join(s.cfgDir, "credentials"))
	if err != nil || creds.UnixSocket != sock || creds.URL != s.url() {
		t.Fatalf("credentials: %+v %v", creds, err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket: %v %v", fi, err)
	}
	// A client configured by the credentials file alone takes the socket.
	t.Setenv(sbx.EnvConfigDir, s.cfgDir)
	t.Setenv(sbx.EnvURL, "")
	t.Setenv(sbx.EnvAPIKey, "")
	if c, err := sbx.NewClient(); err != nil || c.Transport() != "unix" || c.URL() != "unix://"+sock {
		t.Fatalf("from the credentials file: %v %s %s", err, c.Transport(), c.URL())
	}

	ctx := ctxT(t, 3*time.Minute)
	c, err := sbx.NewClient(sbx.WithURL("unix://"+sock), sbx.WithAPIKey(s.key))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := c.Run(ctx, sbx.Image("busybox"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Delete(context.Background()) })
	res, err := sb.Exec(ctx, []string{"sh", "-c", "echo out; echo err >&2; exit 3"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := res.Result()
	if err != nil || string(r.Stdout) != "out\n" || string(r.Stderr) != "err\n" || r.ExitCode != 3 {
		t.Fatalf("exec over the socket: %+v %v", r, err)
	}
	g, err := sbx.NewClient(sbx.WithURL("unix://"+sock), sbx.WithAPIKey(s.key), sbx.WithGRPC())
	if err != nil {
		t.Fatal(err)
	}
	gsb, err := g.Get(ctx, sb.ID())
	if err != nil {
		t.Fatal(err)
	}
	p, err := gsb.Exec(ctx, []string{"cat"}, sbx.Stdin(), sbx.Check())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(p.Stdin, "grpc over unix")
	p.Stdin.Close()
	if r, err := p.Result(); err != nil || string(r.Stdout) != "grpc over unix" {
		t.Fatalf("gRPC exec over the socket: %q %v", r.Stdout, err)
	}

	// Bulk: from memory, from a file (sendfile into the socket), back.
	hc := unixHTTP(sock)
	before := fileRPCs(t, hc)
	data := make([]byte, 24<<20+3)
	rand.Read(data)
	if n, err := sb.WriteFileFrom(ctx, "/tmp/u/blob", bytes.NewReader(data), 0o600); err != nil || n != int64(len(data)) {
		t.Fatalf("write: %d %v", n, err)
	}
	local := filepath.Join(t.TempDir(), "src")
	os.WriteFile(local, data[:9<<20], 0o644)
	f, err := os.Open(local)
	if err != nil {
		t.Fatal(err)
	}
	n, err := sb.WriteFileFrom(ctx, "/tmp/u/from-file", f, 0o644)
	f.Close()
	if err != nil || n != 9<<20 {
		t.Fatalf("write from a file: %d %v", n, err)
	}
	for path, want := range map[string][]byte{"/tmp/u/blob": data, "/tmp/u/from-file": data[:9<<20]} {
		var got bytes.Buffer
		if n, err := sb.ReadFileTo(ctx, path, &got); err != nil || n != int64(len(want)) || !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("read %s back: %d bytes, %v", path, n, err)
		}
	}
	if after := fileRPCs(t, hc); after != before {
		t.Fatalf("the transfers took the file RPCs (%d -> %d), not the bulk endpoint", before, after)
	}
	if _, err := sb.ReadFile(ctx, "/tmp/u/missing"); !errors.Is(err, sbx.ErrNotFound) {
		t.Fatalf("missing file over the socket: %v", err)
	}

	// The same auth and tenancy as on TCP.
	other, err := sbx.NewClient(sbx.WithURL("unix://"+sock), sbx.WithAPIKey(s.newTenant("unix-other")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Get(ctx, sb.ID()); !errors.Is(err, sbx.ErrNotFound) {
		t.Fatalf("another tenant over the socket: %v", err)
	}
	nokey, err := sbx.NewClient(sbx.WithURL("unix://"+sock), sbx.WithAPIKey("sbx_wrong"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nokey.List(ctx, sbx.ListOptions{}); !errors.Is(err, sbx.ErrUnauthenticated) {
		t.Fatalf("a wrong key over the socket: %v", err)
	}

	// A crash leaves the socket file; the next start replaces it.
	s.kill9()
	if _, err := os.Lstat(sock); err != nil {
		t.Logf("the killed server left no socket (%v); the restart is still checked", err)
	}
	s.start()
	if got, err := c.Get(ctx, sb.ID()); err != nil || got.ID() != sb.ID() {
		t.Fatalf("over the socket after a restart: %v", err)
	}
	if out, err := sb.Exec(ctx, []string{"cat", "/tmp/u/from-file"}); err != nil {
		t.Fatal(err)
	} else if r, err := out.Result(); err != nil || !strings.HasPrefix(string(r.Stdout), string(data[:64])) {
		t.Fatalf("exec after the restart: %v", err)
	}
}
