package server_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"testing"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// BenchmarkProxySandbox measures published ports on the whole stack: a
// real sandbox behind busybox httpd, reached directly at its address and
// through the proxy (routing, key check, one store read, reverse proxy).
func BenchmarkProxySandbox(b *testing.B) {
	e := newPortEnv(b)
	ctx := context.Background()
	cr, err := e.a.Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{
		Image:        e.image,
		Command:      []string{"httpd", "-f", "-p", "8080", "-h", "/www"},
		MountedFiles: []*sbxv1.MountedFile{{Path: "/www/index.html", Content: []byte("ok")}},
		Ports:        []*sbxv1.PortSpec{{Port: 8080}},
	}))
	if err != nil {
		b.Fatal(err)
	}
	id := cr.Msg.Sandbox.Id
	w, err := e.a.Wait(ctx, connect.NewRequest(&sbxv1.WaitSandboxRequest{Id: id, Until: sbxv1.WaitCondition_WAIT_CONDITION_RUNNING}))
	if err != nil {
		b.Fatal(err)
	}
	sb := w.Msg.Sandbox
	host := hostOf(b, sb.Ports[0].Url)
	key := "Bearer " + e.keyA
	e.waitServing(b, host, "/", key)

	// A 64 MiB file for the throughput runs.
	const size = 64 << 20
	ag, err := e.rt.Agent(ctx, id)
	if err != nil {
		b.Fatal(err)
	}
	defer ag.Close()
	zero, _ := os.Open("/dev/zero")
	defer zero.Close()
	if err := ag.WriteFile(ctx, "/www/big", 0o644, io.LimitReader(zero, size)); err != nil {
		b.Fatal(err)
	}

	// Latency against portecho (Go's HTTP server, keep-alive).
	e.startEcho(b, id)
	echoHost := hostOf(b, e.expose(b, id, 9000, false).Url)
	e.waitServing(b, echoHost, "/headers", key)

	direct := "http://" + sb.Address + ":8080"
	directEcho := "http://" + sb.Address + ":9000"
	run := func(b *testing.B, url, host string, n int64) {
		c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
		req, _ := http.NewRequest("GET", url, nil)
		if host != "" {
			req.Host = host
			req.Header.Set("Authorization", key)
		}
		if n > 0 {
			b.SetBytes(n)
		}
		for b.Loop() {
			res, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Fatalf("status %d", res.StatusCode)
			}
		}
	}
	b.Run("latency/direct", func(b *testing.B) { run(b, directEcho+"/headers", "", 0) })
	b.Run("latency/proxied", func(b *testing.B) { run(b, e.url+"/headers", echoHost, 0) })
	b.Run("64MiB/direct", func(b *testing.B) { run(b, direct+"/big", "", size) })
	b.Run("64MiB/proxied", func(b *testing.B) { run(b, e.url+"/big", host, size) })
}
