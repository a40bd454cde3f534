package sbx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bulkSink listens on loopback and returns a connection dialed through
// dialBulk and a channel that gets the hash of all the other end read.
func bulkSink(t *testing.T) (*bulkConn, <-chan [32]byte) { return bulkSinkOn(t, "tcp") }

// bulkSinkOn is bulkSink on network "tcp" or "unix".
func bulkSinkOn(t *testing.T, network string) (*bulkConn, <-chan [32]byte) {
	t.Helper()
	addr, socket := "127.0.0.1:0", ""
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s.sock")
		socket = addr
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sum := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		h := sha256.New()
		io.Copy(h, c)
		c.Close()
		var s [32]byte
		copy(s[:], h.Sum(nil))
		sum <- s
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialBulk(socket)(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	bc, ok := c.(*bulkConn)
	if !ok {
		t.Fatalf("dialBulk returned a %T, want a *bulkConn", c)
	}
	return bc, sum
}

// TestBulkConnReadFrom: a body given to the bulk connection as net/http
// gives it (a bodyReader under an *io.LimitedReader of its size) arrives
// whole, a regular file and a *bytes.Reader go without a copy through a
// buffer (sendSource takes them), and any other reader, or a size that is
// not the source's, takes the 1 MiB copy.
func TestBulkConnReadFrom(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 300<<10) // 4.7 MiB
	want := sha256.Sum256(data)
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		src    func() io.Reader
		direct bool
	}{
		{"file", func() io.Reader {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		}, true},
		{"bytes.Reader", func() io.Reader { return bytes.NewReader(data) }, true},
		{"plain reader", func() io.Reader { return struct{ io.Reader }{bytes.NewReader(data)} }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, sum := bulkSink(t)
			br := &bodyReader{r: tc.src(), closed: make(chan struct{})}
			lr := &io.LimitedReader{R: br, N: int64(len(data))}
			if _, handled, _ := c.sendSource(&bodyReader{r: tc.src()}, &io.LimitedReader{N: int64(len(data)) + 1}); handled {
				t.Fatal("sendSource took a source whose size is not the body's")
			}
			if tc.direct {
				if _, handled, _ := c.sendSource(&bodyReader{r: strings.NewReader("")}, lr); handled {
					t.Fatal("sendSource took a source of the wrong size")
				}
			}
			n, err := c.ReadFrom(lr)
			c.Close()
			if err != nil || n != int64(len(data)) || lr.N != 0 {
				t.Fatalf("ReadFrom: %d bytes (%d left): %v", n, lr.N, err)
			}
			if got := <-sum; got != want {
				t.Fatal("the other end read other bytes")
			}
		})
	}
}

// TestBulkConnSendSource: sendSource sends a file and a *bytes.Reader by
// itself, and leaves other readers to the buffered copy.
func TestBulkConnSendSource(t *testing.T) {
	data := []byte(strings.Repeat("x", 1<<20))
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, src := range []io.Reader{f, bytes.NewReader(data), struct{ io.Reader }{bytes.NewReader(data)}} {
		c, sum := bulkSink(t)
		lr := &io.LimitedReader{R: &bodyReader{r: src}, N: int64(len(data))}
		n, handled, err := c.sendSource(lr.R.(*bodyReader), lr)
		_, plain := src.(struct{ io.Reader })
		if handled == plain {
			t.Fatalf("%T: handled %v", src, handled)
		}
		c.Close()
		if handled {
			if err != nil || n != int64(len(data)) || lr.N != 0 {
				t.Fatalf("%T: sent %d (%d left): %v", src, n, lr.N, err)
			}
			if got := <-sum; got != sha256.Sum256(data) {
				t.Fatalf("%T: the other end read other bytes", src)
			}
		}
	}
}
