package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestRunPublishesPortsAndPortLists(t *testing.T) {
	c := newCLI(t)
	code, out, errOut := c.run("", "run", "-d", "-p", "8080", "-p", "9000:public")
	id := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(id, "sb-") || strings.Contains(out, "http") {
		t.Fatalf("run -d -p: exit %d, stdout %q (want the id alone), stderr %q", code, out, errOut)
	}
	if !strings.Contains(errOut, "port 8080 (private): http://8080-"+id+".localhost/") || !strings.Contains(errOut, "port 9000 (public)") {
		t.Errorf("run -d -p: stderr %q lacks the URLs", errOut)
	}

	table := c.must("port", id)
	for _, want := range []string{"PORT", "8080", "private", "9000", "public", "/proxy/" + id + "/9000-tok/"} {
		if !strings.Contains(table, want) {
			t.Errorf("sbx port: %q missing in\n%s", want, table)
		}
	}
	out = c.must("port", id, "3000", "--public")
	if !strings.Contains(out, "3000") || !strings.Contains(out, "public") {
		t.Errorf("sbx port ID 3000 --public:\n%s", out)
	}
	out = c.must("port", id, "3000:private")
	if !strings.Contains(out, "private") {
		t.Errorf("sbx port ID 3000:private:\n%s", out)
	}
	c.must("port", id, "--rm", "8080", "--rm", "3000")
	var ports []portJSON
	if err := json.Unmarshal([]byte(c.must("port", "--json", id)), &ports); err != nil {
		t.Fatal(err)
	}
	if len(ports) != 1 || ports[0].Port != 9000 || !ports[0].Public {
		t.Errorf("ports after --rm: %+v", ports)
	}

	var insp []sandboxJSON
	if err := json.Unmarshal([]byte(c.must("inspect", id)), &insp); err != nil {
		t.Fatal(err)
	}
	if len(insp) != 1 || insp[0].Address == "" || len(insp[0].Ports) != 1 || insp[0].Ports[0].URL == "" {
		t.Errorf("inspect: address %q ports %+v", insp[0].Address, insp[0].Ports)
	}
}

func TestPortUsageErrors(t *testing.T) {
	c := newCLI(t)
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"run", "-d", "-p", "0"}, "-p \"0\""},
		{[]string{"run", "-d", "-p", "http"}, "PORT or PORT:public"},
		{[]string{"run", "-d", "-p", "8080:open"}, "want public or private"},
		{[]string{"run", "-d", "-p", "80", "-p", "80:public"}, "given twice"},
		{[]string{"port"}, "a sandbox id"},
		{[]string{"port", "sb-1", "99999"}, "1 to 65535"},
		{[]string{"port", "sb-1", "--public"}, "--public needs a PORT"},
		{[]string{"port", "sb-1", "--rm", "x"}, "--rm \"x\""},
		{[]string{"port", "sb-1", "80", "--rm", "81"}, "--rm cannot"},
		{[]string{"port-forward", "sb-1"}, "LOCAL_PORT:REMOTE_PORT"},
		{[]string{"port-forward", "sb-1", "8080"}, "no REMOTE_PORT"},
		{[]string{"port-forward", "sb-1", "8080:0"}, "REMOTE_PORT 0"},
		{[]string{"port-forward", "sb-1", "x:80"}, "LOCAL_PORT x"},
		{[]string{"port-forward", "sb-1", ":8080:80"}, "LOCAL_ADDR"},
	} {
		code, _, errOut := c.run("", tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.msg) {
			t.Errorf("sbx %s: exit %d, stderr %q; want exit 2 mentioning %q", strings.Join(tc.args, " "), code, errOut, tc.msg)
		}
	}
	if code, _, errOut := c.run("", "port-forward", "sb-nope", "0:80"); code != 1 || !strings.Contains(errOut, "SANDBOX_NOT_FOUND") {
		t.Errorf("port-forward to an unknown sandbox: exit %d, stderr %q", code, errOut)
	}
}

func TestParseForward(t *testing.T) {
	for in, want := range map[string]struct {
		local  string
		remote int
	}{
		"8080:80":           {"127.0.0.1:8080", 80},
		"0:5432":            {"127.0.0.1:0", 5432},
		"0.0.0.0:8080:80":   {"0.0.0.0:8080", 80},
		"[::1]:8080:80":     {"[::1]:8080", 80},
		"localhost:1:65535": {"localhost:1", 65535},
	} {
		local, remote, err := parseForward(in)
		if err != nil || local != want.local || remote != want.remote {
			t.Errorf("parseForward(%q) = %q, %d, %v; want %q, %d", in, local, remote, err, want.local, want.remote)
		}
	}
}

// TestPortForward runs `sbx port-forward` until its context ends, with two
// connections through it to the fake's echo port.
func TestPortForward(t *testing.T) {
	c := newCLI(t)
	id := strings.TrimSpace(c.must("run", "-d"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var errOut strings.Builder
	go func() {
		done <- execute(ctx, []string{"port-forward", id, "0:7000"}, strings.NewReader(""), pw, &errOut)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v (stderr %q)", err, errOut.String())
	}
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`^Forwarding (127\.0\.0\.1:\d+) -> ` + id + `:7000`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("listening line %q", line)
	}
	for i, msg := range []string{"first connection\n", "second connection\n"} {
		conn, err := net.DialTimeout("tcp", m[1], 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, msg)
		conn.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || string(got) != msg {
			t.Fatalf("connection %d: echo %q, %v", i, got, err)
		}
	}
	if n := c.api.Dials(); n != 2 {
		t.Errorf("%d upgrades, want one per connection (2)", n)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("port-forward ended with exit %d after its context ended, want 0 (stderr %q)", code, errOut.String())
	}
}
