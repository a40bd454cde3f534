package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
)

// page is what the sandbox's busybox httpd serves.
const page = "hello from a published port\n"

// TestPorts drives the sbx binary: run -d -p, a GET through the printed URL
// with and without the key, sbx port (list, expose public, --rm), inspect,
// and port-forward with a TCP round trip through the local port; then the
// Go SDK's port calls on the same server.
func TestPorts(t *testing.T) {
	start := time.Now()
	s := startServer(t)
	step := func(what string) { t.Logf("%s: %s", time.Since(start).Round(time.Millisecond), what) }
	step("server up")
	out, errOut, code := s.cli("", "run", "-d", "-p", "8080", "--image", "busybox", "--",
		"sh", "-c", "mkdir -p /www && printf '"+page+"' > /www/index.html && exec httpd -f -p 8080 -h /www")
	id := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(id, "sb-") {
		t.Fatalf("sbx run -d -p 8080: code %d stdout %q stderr %q", code, out, errOut)
	}
	if !strings.Contains(errOut, "port 8080 (private): http://8080-"+id+".") {
		t.Errorf("sbx run -d -p printed no URL on stderr: %q", errOut)
	}

	step("sandbox created")
	// sbx port lists the URL; the private URL needs the key.
	out, errOut, code = s.cli("", "port", id)
	if code != 0 {
		t.Fatalf("sbx port: code %d stderr %q", code, errOut)
	}
	private := findURL(t, out, "8080", "private")
	if status, body := s.getEventually(private, s.key); status != 200 || body != page {
		t.Fatalf("GET %s with the key: %d %q, want 200 and the page", private, status, body)
	}
	if status, _ := s.get(private, ""); status != 401 {
		t.Errorf("GET %s without the key: %d, want 401", private, status)
	}
	if status, _ := s.get(private, "not-the-key"); status != 401 {
		t.Errorf("GET %s with a wrong key: %d, want 401", private, status)
	}

	step("private URL checked")
	// Made public, it needs no key at its new URL.
	out, errOut, code = s.cli("", "port", id, "8080", "--public")
	if code != 0 {
		t.Fatalf("sbx port ID 8080 --public: code %d stderr %q", code, errOut)
	}
	public := findURL(t, out, "8080", "public")
	if public == private {
		t.Errorf("the public URL is the private one: %s", public)
	}
	if status, body := s.get(public, ""); status != 200 || body != page {
		t.Errorf("GET public %s without the key: %d %q", public, status, body)
	}

	// inspect shows the address and the ports.
	out, _, code = s.cli("", "inspect", id)
	var insp []struct {
		Address string `json:"address"`
		Ports   []struct {
			Port int    `json:"port"`
			URL  string `json:"url"`
		} `json:"ports"`
	}
	if err := json.Unmarshal([]byte(out), &insp); code != 0 || err != nil || len(insp) != 1 {
		t.Fatalf("sbx inspect: code %d %v\n%s", code, err, out)
	}
	if net.ParseIP(insp[0].Address) == nil || len(insp[0].Ports) != 1 || insp[0].Ports[0].URL != public {
		t.Errorf("sbx inspect: address %q ports %+v", insp[0].Address, insp[0].Ports)
	}

	step("public URL and inspect checked")
	s.portForward(t, id)
	step("port-forward checked")

	// Unpublished, the URL is gone.
	if _, errOut, code := s.cli("", "port", id, "--rm", "8080"); code != 0 {
		t.Fatalf("sbx port --rm: code %d stderr %q", code, errOut)
	}
	if status, _ := s.get(public, ""); status != 404 {
		t.Errorf("GET %s after --rm: %d, want 404", public, status)
	}
	if out, _, _ := s.cli("", "port", id); strings.Contains(out, "8080") {
		t.Errorf("sbx port after --rm still lists 8080:\n%s", out)
	}
	step("--rm checked")
	s.portsSDK(t)
	step("SDK checked")
}

// portsSDK drives the same through the Go SDK: Run with Port options,
// Info.Ports and Address, ExposePort, DialPort and UnexposePort.
func (s *server) portsSDK(t *testing.T) {
	ctx := ctxT(t, 2*time.Minute)
	c := s.client()
	sb, err := c.Run(ctx, sbx.Image("busybox"), sbx.Port{Port: 8080, Public: true},
		sbx.MountedFile("/www/index.html", []byte(page)),
		sbx.Command("httpd", "-f", "-p", "8080", "-h", "/www"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := sb.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Ports) != 1 || !info.Ports[0].Public || net.ParseIP(info.Address) == nil {
		t.Fatalf("Info: ports %+v address %q", info.Ports, info.Address)
	}
	if status, body := s.getEventually(info.Ports[0].PathURL, ""); status != 200 || body != page {
		t.Errorf("GET public path URL %s: %d %q", info.Ports[0].PathURL, status, body)
	}
	p, err := sb.ExposePort(ctx, 8080, false)
	if err != nil || p.Public {
		t.Fatalf("ExposePort private: %+v %v", p, err)
	}
	if status, _ := s.get(p.PathURL, ""); status != 401 {
		t.Errorf("GET private path URL without the key: %d, want 401", status)
	}
	conn, err := sb.DialPort(ctx, 8080)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(conn, "GET /index.html HTTP/1.0\r\n\r\n")
	resp, err := io.ReadAll(conn)
	conn.Close()
	if err != nil || !strings.HasSuffix(string(resp), page) {
		t.Errorf("HTTP over DialPort: %v\n%s", err, resp)
	}
	if err := sb.UnexposePort(ctx, 8080); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DialPort(ctx, "sb-nope", 80); !errors.Is(err, sbx.ErrNotFound) {
		t.Errorf("DialPort to an unknown sandbox: %v, want ErrNotFound", err)
	}
	if _, err := s.client("wrong").DialPort(ctx, sb.ID(), 8080); !errors.Is(err, sbx.ErrUnauthenticated) {
		t.Errorf("DialPort with a wrong key: %v, want ErrUnauthenticated", err)
	}
}

// portForward runs `sbx port-forward ID 0:8080`, makes two HTTP requests
// over raw TCP through the local port, then interrupts it.
func (s *server) portForward(t *testing.T, id string) {
	t.Helper()
	cmd := exec.Command(s.bin, "port-forward", id, "0:8080")
	cmd.Env = append(os.Environ(), "SBX_URL="+s.url(), "SBX_API_KEY="+s.key, sbx.EnvConfigDir+"="+s.cfgDir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("sbx port-forward printed no listening line: %v; stderr %q", err, stderr.String())
	}
	go io.Copy(io.Discard, stdout)
	m := regexp.MustCompile(`^Forwarding (127\.0\.0\.1:\d+) -> ` + id + `:8080`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("sbx port-forward: listening line %q", line)
	}
	for i := 0; i < 2; i++ {
		conn, err := net.DialTimeout("tcp", m[1], 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(conn, "GET /index.html HTTP/1.0\r\nHost: sandbox\r\n\r\n")
		resp, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || !strings.HasPrefix(string(resp), "HTTP/1.") || !strings.HasSuffix(string(resp), page) {
			t.Fatalf("request %d through the forwarded port: %v\n%s\nstderr %q", i, err, resp, stderr.String())
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Errorf("sbx port-forward after Ctrl-C: %v (want exit 0); stderr %q", err, stderr.String())
	}
}

// findURL returns the URL column of the row of port with visibility in a
// `sbx port` table.
func findURL(t *testing.T, table, port, visibility string) string {
	t.Helper()
	for _, l := range strings.Split(table, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == port && f[1] == visibility {
			return f[2]
		}
	}
	t.Fatalf("no %s %s row in:\n%s", visibility, port, table)
	return ""
}

// get fetches u/index.html through the server's own listener (with u's
// host in the Host header, so that *.localhost need not resolve), with the
// key as a Bearer token unless it is empty, and returns status and body.
func (s *server) get(u, key string) (int, string) {
	s.t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		s.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, s.url()+strings.TrimSuffix(pu.Path, "/")+"/index.html", nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Host = pu.Host
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// getEventually is get, retrying while the sandbox's server is not
// listening yet (the proxy answers 502).
func (s *server) getEventually(u, key string) (int, string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, body := s.get(u, key)
		if status != http.StatusBadGateway || time.Now().After(deadline) {
			return status, body
		}
		time.Sleep(100 * time.Millisecond)
	}
}
