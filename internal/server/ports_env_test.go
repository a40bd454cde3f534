package server_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/image"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/network"
	"github.com/sbx-run/sbx/internal/proxy"
	"github.com/sbx-run/sbx/internal/runtime/local"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/server"
	"github.com/sbx-run/sbx/internal/testenv"
)

// portEnv is a whole server with sandbox networking, as sbx serve wires
// it: a real local runtime (runc, which needs no private mount namespace)
// on a bridge, nftables table and subnet of this test's own, the
// lifecycle manager on SQLite, the API and the port proxy on one listener.
type portEnv struct {
	addr       string // host:port of the listener
	url        string
	rt         *local.Runtime
	image      string
	keyA, keyB string
	a, b       sbxv1connect.SandboxServiceClient
}

func newPortEnv(t testing.TB) *portEnv {
	t.Helper()
	testenv.Require(t, true, "runc")
	ctx := context.Background()
	reg := testenv.Registry(t)
	e := &portEnv{image: testenv.PushBusybox(t, reg)}
	images, err := image.New(image.Config{Root: t.TempDir(), Insecure: []string{reg}})
	if err != nil {
		t.Fatal(err)
	}

	// Names and a subnet no other test and no running server uses (a
	// quickstart server holds 10.203.0.0/16).
	sfx := randHex(3)
	tn := testenv.NewNetwork(t)
	nm, err := network.New(network.Config{Bridge: tn.Bridge, Table: tn.Table, Subnet: tn.Subnet, StateDir: t.TempDir()})
	if err != nil {
		t.Fatalf("network.New: %v", err)
	}
	t.Cleanup(func() {
		if err := nm.Destroy(context.Background()); err != nil {
			t.Errorf("network Destroy: %v", err)
		}
		nm.Close()
	})

	root, err := os.MkdirTemp("", "sbx-px-")
	if err != nil {
		t.Fatal(err)
	}
	parent := "sbx-test-px-" + sfx
	rt, err := local.New(ctx, local.Config{Root: root, Runtime: "runc", AgentPath: testenv.AgentBinary(t), Images: images,
		Defaults: sandbox.Resources{CPUMillis: 1000, MemoryBytes: 256 << 20, Pids: 256}, CgroupParent: parent, Network: nm})
	if err != nil {
		t.Fatalf("local.New: %v", err)
	}
	e.rt = rt
	t.Cleanup(func() {
		list, _ := rt.List(context.Background())
		for _, in := range list {
			if err := rt.Delete(context.Background(), in.ID); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
				t.Errorf("cleanup: Delete(%s): %v", in.ID, err)
			}
		}
		os.RemoveAll(root)
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + parent)
		for _, d := range append(dirs, "/sys/fs/cgroup/"+parent) {
			os.Remove(d)
		}
	})

	m, st := startManager(t, rt, lifecycle.Config{})
	quiet := quietLog
	if _, e.keyA, err = auth.NewTenant(ctx, st, "a"); err != nil {
		t.Fatal(err)
	}
	if _, e.keyB, err = auth.NewTenant(ctx, st, "b"); err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewUnstartedServer(nil)
	e.addr = srv.Listener.Addr().String()
	e.url = "http://" + e.addr
	prx, err := proxy.New(proxy.Config{Sandboxes: m, Auth: auth.NewAuthenticator(st), Dialer: rt, APIURL: e.url, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prx.Close)
	api := server.New(server.Config{Manager: m, Auth: auth.NewAuthenticator(st), Logger: quiet, Proxy: prx})
	srv.Config = server.NewHTTPServer("", prx.Wrap(api))
	srv.Start()
	t.Cleanup(srv.Close)
	e.a = sbxv1connect.NewSandboxServiceClient(&http.Client{Transport: bearer{key: e.keyA, next: http.DefaultTransport}}, e.url)
	e.b = sbxv1connect.NewSandboxServiceClient(&http.Client{Transport: bearer{key: e.keyB, next: http.DefaultTransport}}, e.url)
	return e
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// get sends a GET to the listener with Host host and the Authorization
// header auth (both optional) and returns the status and body.
func (e *portEnv) get(t testing.TB, host, path, authz string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", e.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, string(body)
}

// waitServing polls until the request answers 200 (the server in the
// sandbox starting up answers 502 until it listens).
func (e *portEnv) waitServing(t testing.TB, host, path, authz string) string {
	t.Helper()
	var status int
	var body string
	for range 300 {
		if status, body = e.get(t, host, path, authz); status == 200 {
			return body
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s%s never served: %d %q", host, path, status, body)
	return ""
}

// hostOf returns the Host of a host-form URL.
func hostOf(t testing.TB, u string) string {
	t.Helper()
	h, ok := strings.CutPrefix(u, "http://")
	if !ok {
		t.Fatalf("URL %q", u)
	}
	return strings.TrimSuffix(h, "/")
}

// startEcho writes the portecho server into sandbox id and runs it: HTTP
// and WebSocket on 9000, raw TCP echo on 9001.
func (e *portEnv) startEcho(t testing.TB, id string) {
	t.Helper()
	bin := testenv.Binary(t, "./internal/server/testdata/portecho")
	ctx := context.Background()
	ag, err := e.rt.Agent(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ag.Close() })
	f, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := ag.WriteFile(ctx, "/opt/portecho", 0o755, f); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithCancel(ctx)
	p, err := ag.Exec(pctx, sandbox.ExecSpec{Command: []string{"/opt/portecho"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(); cancel() })
}

// expose publishes port of sandbox id for tenant a.
func (e *portEnv) expose(t testing.TB, id string, port int32, public bool) *sbxv1.ExposedPort {
	t.Helper()
	r, err := e.a.ExposePort(context.Background(), connect.NewRequest(&sbxv1.ExposePortRequest{SandboxId: id, Port: &sbxv1.PortSpec{Port: port, Public: public}}))
	if err != nil {
		t.Fatalf("ExposePort %d: %v", port, err)
	}
	return r.Msg.Port
}

// A minimal RFC 6455 client, so that the test needs no module for it.

// wsDial opens a WebSocket through the listener at path with Host host.
func wsDial(t *testing.T, addr, host, path, authz string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString([]byte(randHex(8)))
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n", path, host, key)
	if authz != "" {
		req += "Authorization: " + authz + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		t.Fatalf("WebSocket upgrade of %s%s: %v %v", host, path, res, err)
	}
	return c, br
}

// wsSend sends one masked text frame (payloads under 64 KiB).
func wsSend(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	h := []byte{0x81}
	if len(msg) < 126 {
		h = append(h, 0x80|byte(len(msg)))
	} else {
		h = append(h, 0x80|126)
		h = binary.BigEndian.AppendUint16(h, uint16(len(msg)))
	}
	mask := []byte{1, 2, 3, 4}
	p := []byte(msg)
	for i := range p {
		p[i] ^= mask[i%4]
	}
	if _, err := c.Write(append(append(h, mask...), p...)); err != nil {
		t.Fatal(err)
	}
}

// wsRecv reads one unmasked frame from the server.
func wsRecv(br *bufio.Reader) (string, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return "", err
	}
	n := int(h[1] & 0x7f)
	if n == 126 {
		var b [2]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return "", err
		}
		n = int(binary.BigEndian.Uint16(b[:]))
	}
	p := make([]byte, n)
	_, err := io.ReadFull(br, p)
	return string(p), err
}
