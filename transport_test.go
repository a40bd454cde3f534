package sbx

import (
	"bytes"
	"io"
	"net/http"
	"reflect"
	"testing"
)

// inMemoryBodies must hand net/http a body it knows to be in memory, so
// that headers and body leave in one write.
func TestInMemoryBodies(t *testing.T) {
	body := []byte("hello")
	var seen *http.Request
	next := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		seen = r
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	})
	orig := &readCounter{r: bytes.NewReader(body)}
	req, err := http.NewRequest("POST", "http://x/", orig)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	if _, err := (inMemoryBodies{next}).RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	if seen == req || req.Body != io.ReadCloser(orig) {
		t.Fatal("the caller's request was changed or passed on as it was")
	}
	if !orig.closed {
		t.Fatal("the original body was not closed")
	}
	// net/http treats a NopCloser of a *bytes.Reader as in memory.
	if reflect.TypeOf(seen.Body) != reflect.TypeOf(io.NopCloser(bytes.NewReader(nil))) {
		t.Fatalf("body sent as %T", seen.Body)
	}
	for i := 0; i < 2; i++ {
		b, _ := io.ReadAll(seen.Body)
		if string(b) != "hello" {
			t.Fatalf("body %q", b)
		}
		if seen.Body, err = seen.GetBody(); err != nil {
			t.Fatal(err)
		}
	}
	// Large or unknown-length bodies pass as they are.
	req2, _ := http.NewRequest("POST", "http://x/", &readCounter{r: bytes.NewReader(body)})
	req2.ContentLength = -1
	(inMemoryBodies{next}).RoundTrip(req2)
	if seen != req2 {
		t.Fatal("a body of unknown length was rewritten")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type readCounter struct {
	r      io.Reader
	closed bool
}

func (c *readCounter) Read(b []byte) (int, error) { return c.r.Read(b) }
func (c *readCounter) Close() error               { c.closed = true; return nil }
