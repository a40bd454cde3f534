package sbx

import (
	"bytes"
	"io"
	"net/http"
)

// maxInMemoryBody is the largest request body that inMemoryBodies reads
// into memory before sending.
const maxInMemoryBody = 64 << 10

// inMemoryBodies is the default client's RoundTripper. connect-go hands
// net/http each request's message as a reader net/http does not know, so
// net/http writes the headers and the body with a write each, and the
// server reads them with a wake-up each. Read into memory first, a small
// body leaves with its headers in one write.
type inMemoryBodies struct{ next http.RoundTripper }

// RoundTrip sends r, with its body in memory when it is small and of known
// length.
func (t inMemoryBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength <= 0 || r.ContentLength > maxInMemoryBody {
		return t.next.RoundTrip(r)
	}
	b := make([]byte, r.ContentLength)
	_, err := io.ReadFull(r.Body, b)
	r.Body.Close()
	if err != nil {
		return nil, err
	}
	r2 := *r // RoundTrip must not change the caller's request
	r2.Body = io.NopCloser(bytes.NewReader(b))
	r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return t.next.RoundTrip(&r2)
}
