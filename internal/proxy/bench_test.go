package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
)

// The benchmarks measure what the proxy adds over a direct request to the
// same loopback server: routing, the access check (in-memory fakes here;
// the real lookup is one store read) and the reverse proxy itself.

func benchGet(b *testing.B, c *http.Client, url, host, key string) {
	req, _ := http.NewRequest("GET", url, nil)
	if host != "" {
		req.Host = host
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	b.ResetTimer()
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

func client() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
}

// BenchmarkProxyLatency: one small GET per iteration, sequential, keep-alive.
func BenchmarkProxyLatency(b *testing.B) {
	f := newFixture(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	b.Run("direct", func(b *testing.B) { benchGet(b, client(), f.upstream+"/", "", "") })
	b.Run("private-host", func(b *testing.B) { benchGet(b, client(), f.api+"/", "8080-sb-a.localhost", keyA) })
	b.Run("public-path", func(b *testing.B) { benchGet(b, client(), f.api+"/proxy/sb-a/9090-"+tok+"/", "", "") })
}

// BenchmarkProxyThroughput: one 64 MiB response per iteration.
func BenchmarkProxyThroughput(b *testing.B) {
	const size = 64 << 20
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	f := newFixture(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		for range size / len(chunk) {
			w.Write(chunk)
		}
	}))
	b.Run("direct", func(b *testing.B) { b.SetBytes(size); benchGet(b, client(), f.upstream+"/", "", "") })
	b.Run("proxied", func(b *testing.B) { b.SetBytes(size); benchGet(b, client(), f.api+"/", "8080-sb-a.localhost", keyA) })
}

// BenchmarkProxyTCPThroughput: 64 MiB from the sandbox port through a
// port-forward tunnel (one new tunnel per iteration).
func BenchmarkProxyTCPThroughput(b *testing.B) {
	const size = 64 << 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for range size / len(chunk) {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	f := newFixture(b, nil)
	f.prx.cfg.Dialer = fakeDialer{ln.Addr().String()}
	b.SetBytes(size)
	for b.Loop() {
		c, br := dialTCP(b, f.api, "/proxy-tcp/sb-a/5432", keyA)
		n, err := io.Copy(io.Discard, br)
		c.Close()
		if err != nil || n != size {
			b.Fatalf("read %d bytes: %v", n, err)
		}
	}
}
