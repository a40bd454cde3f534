package fdcopy

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pair returns both ends of a connected Unix stream socket.
func pair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan *net.UnixConn, 1)
	go func() {
		c, _ := ln.AcceptUnix()
		done <- c
	}()
	a, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	b := <-done
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestSendFile(t *testing.T) {
	data := []byte(strings.Repeat("fdcopy-", 1<<20)) // 7 MiB, more than a socket buffer
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, data, 0o600)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Seek(3, io.SeekStart)
	for _, tc := range []struct {
		name string
		src  io.Reader
		want []byte
		left int64
	}{
		{"limited", &io.LimitedReader{R: f, N: 5 << 20}, data[3 : 3+5<<20], 0},
		{"rest of the file", f, data[3+5<<20:], 0},
		{"limit past the end", &io.LimitedReader{R: f, N: 10}, nil, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pair(t)
			got := make(chan []byte, 1)
			go func() { x, _ := io.ReadAll(b); got <- x }()
			n, handled, err := SendFile(a, tc.src)
			a.CloseWrite()
			if !handled || err != nil || n != int64(len(tc.want)) {
				t.Fatalf("handled %v, %d bytes, %v; want %d", handled, n, err, len(tc.want))
			}
			if lr, ok := tc.src.(*io.LimitedReader); ok && lr.N != tc.left {
				t.Fatalf("limit left %d, want %d", lr.N, tc.left)
			}
			if x := <-got; !bytes.Equal(x, tc.want) {
				t.Fatalf("the other end read %d other bytes", len(x))
			}
		})
	}
	a, _ := pair(t)
	for _, src := range []io.Reader{bytes.NewReader(data), &io.LimitedReader{R: strings.NewReader("x"), N: 1}} {
		if _, handled, _ := SendFile(a, src); handled {
			t.Errorf("%T: handled", src)
		}
	}
	dir, _ := os.Open(t.TempDir())
	defer dir.Close()
	if _, handled, _ := SendFile(a, dir); handled {
		t.Error("a directory: handled")
	}
}
