package server_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// TestPublishedPorts drives published ports end to end through the real
// handler stack and a real sandbox: busybox httpd on 8080, and portecho
// (HTTP headers, WebSocket echo, raw TCP echo) on 9000 and 9001.
func TestPublishedPorts(t *testing.T) {
	e := newPortEnv(t)
	ctx := context.Background()
	cr, err := e.a.Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{
		Image:        e.image,
		Command:      []string{"httpd", "-f", "-p", "8080", "-h", "/www"},
		MountedFiles: []*sbxv1.MountedFile{{Path: "/www/index.html", Content: []byte("hello from httpd\n")}},
		Ports:        []*sbxv1.PortSpec{{Port: 8080}},
	}))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	id := cr.Msg.Sandbox.Id
	w, err := e.a.Wait(ctx, connect.NewRequest(&sbxv1.WaitSandboxRequest{Id: id, Until: sbxv1.WaitCondition_WAIT_CONDITION_RUNNING}))
	if err != nil || w.Msg.Sandbox.State != sbxv1.SandboxState_SANDBOX_STATE_RUNNING {
		t.Fatalf("Wait: %v %v", err, w)
	}
	sb := w.Msg.Sandbox
	port := e.addr[strings.LastIndexByte(e.addr, ':')+1:]
	if len(sb.Ports) != 1 || sb.Ports[0].Url != "http://8080-"+id+".localhost:"+port+"/" || sb.Ports[0].PathUrl != e.url+"/proxy/"+id+"/8080/" || sb.Ports[0].Public {
		t.Fatalf("ports on Get: %v", sb.Ports)
	}
	if net.ParseIP(sb.Address) == nil {
		t.Fatalf("address %q", sb.Address)
	}
	keyA, keyB := "Bearer "+e.keyA, "Bearer "+e.keyB
	private := hostOf(t, sb.Ports[0].Url)

	t.Run("private", func(t *testing.T) {
		if body := e.waitServing(t, private, "/", keyA); body != "hello from httpd\n" {
			t.Fatalf("host form: %q", body)
		}
		if s, body := e.get(t, "", "/proxy/"+id+"/8080/index.html", keyA); s != 200 || body != "hello from httpd\n" {
			t.Fatalf("path form: %d %q", s, body)
		}
		req, _ := http.NewRequest("GET", e.url+"/", nil)
		req.Host = private
		req.SetBasicAuth("anyone", e.keyA)
		if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
			t.Fatalf("basic auth: %v %v", res, err)
		} else {
			res.Body.Close()
		}
		if s, _ := e.get(t, private, "/", ""); s != 401 {
			t.Fatalf("no key: %d", s)
		}
		if s, _ := e.get(t, "", "/proxy/"+id+"/8080/", "Bearer sbx_unknown"); s != 401 {
			t.Fatalf("unknown key: %d", s)
		}
		e.expose(t, id, 8081, false)
		if s, body := e.get(t, "8081-"+id+".localhost", "/", keyA); s != 502 || !strings.Contains(body, "nothing listens on port 8081") || strings.Count(body, "\n") != 1 {
			t.Fatalf("port not listening: %d %q", s, body)
		}
		e.a.UnexposePort(ctx, connect.NewRequest(&sbxv1.UnexposePortRequest{SandboxId: id, Port: 8081}))
		s1, b1 := e.get(t, private, "/", keyB)
		s2, b2 := e.get(t, "8080-sb-doesnotexist0000.localhost", "/", keyA)
		s3, b3 := e.get(t, "8081-"+id+".localhost", "/", keyA)
		if s1 != 404 || s2 != 404 || s3 != 404 || b1 != b2 || b2 != b3 {
			t.Fatalf("other tenant / no sandbox / not published: %d %q, %d %q, %d %q", s1, b1, s2, b2, s3, b3)
		}
	})

	t.Run("public", func(t *testing.T) {
		p := e.expose(t, id, 8080, true)
		if !p.Public || !strings.HasPrefix(p.Url, "http://8080-"+id+"-") {
			t.Fatalf("ExposePort public: %v", p)
		}
		if again := e.expose(t, id, 8080, true); again.Url != p.Url {
			t.Fatalf("ExposePort is not idempotent: %q then %q", p.Url, again.Url)
		}
		if s, body := e.get(t, hostOf(t, p.Url), "/", ""); s != 200 || body != "hello from httpd\n" {
			t.Fatalf("public host form without a key: %d %q", s, body)
		}
		if s, body := e.get(t, "", strings.TrimPrefix(p.PathUrl, e.url), ""); s != 200 || body != "hello from httpd\n" {
			t.Fatalf("public path form: %d %q", s, body)
		}
		token := strings.TrimPrefix(strings.TrimSuffix(hostOf(t, p.Url), ".localhost:"+port), "8080-"+id+"-")
		wrong := strings.Repeat("a", len(token))
		if s, _ := e.get(t, "8080-"+id+"-"+wrong+".localhost", "/", ""); s != 404 {
			t.Fatalf("wrong token: %d", s)
		}
		if s, _ := e.get(t, "", "/proxy/"+id+"/8080-"+wrong+"/", ""); s != 404 {
			t.Fatalf("wrong token, path form: %d", s)
		}
		// Going private drops the token.
		e.expose(t, id, 8080, false)
		if s, _ := e.get(t, hostOf(t, p.Url), "/", ""); s != 404 {
			t.Fatalf("old public URL after going private: %d", s)
		}
		if p2 := e.expose(t, id, 8080, true); p2.Url == p.Url {
			t.Fatal("going public again reused the old token")
		}
	})

	e.startEcho(t, id)
	ws := e.expose(t, id, 9000, false)
	wsPrivate := hostOf(t, ws.Url)
	e.waitServing(t, wsPrivate, "/headers", keyA)

	t.Run("credentials stripped", func(t *testing.T) {
		_, body := e.get(t, wsPrivate, "/headers", keyA)
		if strings.Contains(body, e.keyA) || strings.Contains(strings.ToLower(body), "authorization") {
			t.Fatalf("the sandbox saw the caller's key:\n%s", body)
		}
		for _, want := range []string{"Host: " + wsPrivate, "X-Forwarded-Host: " + wsPrivate, "X-Forwarded-Proto: http", "X-Forwarded-For: 127.0.0.1"} {
			if !strings.Contains(body, want+"\n") {
				t.Fatalf("missing %q in\n%s", want, body)
			}
		}
	})

	t.Run("websocket", func(t *testing.T) {
		c, br := wsDial(t, e.addr, wsPrivate, "/ws", keyA)
		defer c.Close()
		for _, msg := range []string{"hello", strings.Repeat("x", 1000)} {
			wsSend(t, c, msg)
			if got, err := wsRecv(br); err != nil || got != msg {
				t.Fatalf("private echo: %q %v", got, err)
			}
		}
		e.expose(t, id, 9001, true)
		p := e.expose(t, id, 9000, true)
		c2, br2 := wsDial(t, e.addr, "", strings.TrimPrefix(p.PathUrl, e.url)+"ws", "")
		defer c2.Close()
		wsSend(t, c2, "public hello")
		if got, err := wsRecv(br2); err != nil || got != "public hello" {
			t.Fatalf("public echo: %q %v", got, err)
		}
		c3, br3 := wsDial(t, e.addr, hostOf(t, p.Url), "/ws", "")
		defer c3.Close()
		wsSend(t, c3, "public host form")
		if got, err := wsRecv(br3); err != nil || got != "public host form" {
			t.Fatalf("public echo, host form: %q %v", got, err)
		}
		// Unexposing cuts the open WebSockets.
		if _, err := e.a.UnexposePort(ctx, connect.NewRequest(&sbxv1.UnexposePortRequest{SandboxId: id, Port: 9000})); err != nil {
			t.Fatal(err)
		}
		c3.SetReadDeadline(time.Now().Add(30 * time.Second))
		if got, err := wsRecv(br3); err == nil {
			t.Fatalf("WebSocket still open after UnexposePort: read %q", got)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("WebSocket still open after UnexposePort")
		}
		if s, _ := e.get(t, hostOf(t, p.Url), "/headers", ""); s != 404 {
			t.Fatalf("unexposed port answered %d", s)
		}
	})

	t.Run("raw tcp", func(t *testing.T) {
		if s, _ := e.get(t, "", "/proxy-tcp/"+id+"/9001", ""); s != 401 {
			t.Fatalf("no key: %d", s)
		}
		if s, body := e.get(t, "", "/proxy-tcp/"+id+"/9001", keyA); s != 400 || !strings.Contains(body, "Upgrade: sbx-tcp") {
			t.Fatalf("no upgrade headers: %d %q", s, body)
		}
		c, br := tcpDial(t, e.addr, "/proxy-tcp/"+id+"/9001", keyB)
		if res, err := http.ReadResponse(br, nil); err != nil || res.StatusCode != 404 {
			t.Fatalf("other tenant: %v %v", res, err)
		}
		c.Close()
		// 9001 was published publicly above; port-forward needs no
		// publishing, and 9001 is unpublished now to show it.
		e.a.UnexposePort(ctx, connect.NewRequest(&sbxv1.UnexposePortRequest{SandboxId: id, Port: 9001}))
		c, br = tcpDial(t, e.addr, "/proxy-tcp/"+id+"/9001", keyA)
		defer c.Close()
		res, err := http.ReadResponse(br, nil)
		if err != nil || res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Upgrade") != "sbx-tcp" {
			t.Fatalf("upgrade: %v %v", res, err)
		}
		msg := strings.Repeat("raw bytes \x00\xff ", 50000)
		go func() {
			io.WriteString(c, msg)
			c.(*net.TCPConn).CloseWrite()
		}()
		got, err := io.ReadAll(br)
		if err != nil || string(got) != msg {
			t.Fatalf("round trip: %d of %d bytes, %v", len(got), len(msg), err)
		}
	})

	t.Run("not running", func(t *testing.T) {
		if _, err := e.a.Stop(ctx, connect.NewRequest(&sbxv1.StopSandboxRequest{Id: id})); err != nil {
			t.Fatal(err)
		}
		e.a.Wait(ctx, connect.NewRequest(&sbxv1.WaitSandboxRequest{Id: id, Until: sbxv1.WaitCondition_WAIT_CONDITION_TERMINAL}))
		s, body := e.get(t, private, "/", keyA)
		if s != 502 || !strings.Contains(body, "not RUNNING") || strings.Count(body, "\n") != 1 {
			t.Fatalf("stopped sandbox: %d %q", s, body)
		}
	})
}

// tcpDial sends a port-forward upgrade request.
func tcpDial(t *testing.T, addr, path, authz string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: Upgrade\r\nUpgrade: sbx-tcp\r\nAuthorization: " + authz + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}
