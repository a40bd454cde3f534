package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/lifecycle/lifecycletest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/server"
)

// bulkEnv is a server with the Connect API and the bulk endpoint on one
// mux, as the daemon routes them, over the fake runtime.
type bulkEnv struct {
	url, keyA, keyB string
	rpc             func(key string) sbxv1connect.SandboxServiceClient
}

func newBulkEnv(t *testing.T) *bulkEnv {
	t.Helper()
	ctx := context.Background()
	m, st := startManager(t, lifecycletest.NewRuntime(), lifecycle.Config{Linger: time.Hour, SweepInterval: 10 * time.Millisecond})
	quiet := quietLog
	e := &bulkEnv{}
	var err error
	if _, e.keyA, err = auth.NewTenant(ctx, st, "a"); err != nil {
		t.Fatal(err)
	}
	if _, e.keyB, err = auth.NewTenant(ctx, st, "b"); err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Manager: m, Auth: auth.NewAuthenticator(st), Logger: quiet}
	mux := http.NewServeMux()
	mux.Handle("/", server.New(cfg))
	mux.Handle(server.BulkPrefix, server.NewBulk(cfg))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	e.rpc = func(key string) sbxv1connect.SandboxServiceClient {
		return sbxv1connect.NewSandboxServiceClient(&http.Client{Transport: bearer{key: key, next: http.DefaultTransport}}, srv.URL)
	}
	return e
}

// do sends a bulk request and returns the status, the Sbx-Reason and the
// body.
func (e *bulkEnv) do(t *testing.T, method, key, id, query string, body io.Reader) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+server.BulkPrefix+id+"/file?"+query, body)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get(server.ReasonHeader), b
}

func wantBulk(t *testing.T, status int, reason string, body []byte, wantStatus int, wantCode, wantReason string) {
	t.Helper()
	var e struct{ Code, Message string }
	if err := json.Unmarshal(body, &e); err != nil || status != wantStatus || e.Code != wantCode || reason != wantReason || e.Message == "" {
		t.Fatalf("got %d %s %q (%v), want %d %s %s", status, reason, body, err, wantStatus, wantCode, wantReason)
	}
}

func TestBulkFiles(t *testing.T) {
	e := newBulkEnv(t)
	ctx := context.Background()
	sb := running(t, e.rpc(e.keyA), &sbxv1.CreateSandboxRequest{})
	q := url.Values{"path": {"/data/blob"}, "mode": {"600"}}.Encode()

	data := make([]byte, 3<<20+123)
	rand.Read(data)
	status, reason, body := e.do(t, http.MethodPut, e.keyA, sb.Id, q, bytes.NewReader(data))
	if status != http.StatusOK || !strings.Contains(string(body), fmt.Sprint(len(data))) {
		t.Fatalf("PUT: %d %s %s", status, reason, body)
	}
	st, err := e.rpc(e.keyA).Stat(ctx, connect.NewRequest(&sbxv1.StatRequest{SandboxId: sb.Id, Path: "/data/blob"}))
	if err != nil || st.Msg.Info.Size != int64(len(data)) || st.Msg.Info.Mode&0o777 != 0o600 {
		t.Fatalf("Stat: %v %+v", err, st)
	}
	status, _, body = e.do(t, http.MethodGet, e.keyA, sb.Id, q, nil)
	if status != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("GET: %d, %d bytes back of %d", status, len(body), len(data))
	}

	// Another tenant sees no such sandbox; no key is no access.
	status, reason, body = e.do(t, http.MethodGet, e.keyB, sb.Id, q, nil)
	wantBulk(t, status, reason, body, http.StatusNotFound, "not_found", sandbox.ReasonSandboxNotFound)
	status, reason, body = e.do(t, http.MethodPut, e.keyB, sb.Id, q, strings.NewReader("x"))
	wantBulk(t, status, reason, body, http.StatusNotFound, "not_found", sandbox.ReasonSandboxNotFound)
	status, reason, body = e.do(t, http.MethodGet, "", sb.Id, q, nil)
	wantBulk(t, status, reason, body, http.StatusUnauthorized, "unauthenticated", sandbox.ReasonUnauthenticated)
	status, reason, body = e.do(t, http.MethodGet, "sbx_wrong", sb.Id, q, nil)
	wantBulk(t, status, reason, body, http.StatusUnauthorized, "unauthenticated", sandbox.ReasonUnauthenticated)

	// Validation, as for the RPCs.
	status, reason, body = e.do(t, http.MethodPut, e.keyA, sb.Id, "path=a%00b", strings.NewReader("x"))
	wantBulk(t, status, reason, body, http.StatusBadRequest, "invalid_argument", sandbox.ReasonInvalidPath)
	status, reason, body = e.do(t, http.MethodGet, e.keyA, sb.Id, "", nil)
	wantBulk(t, status, reason, body, http.StatusBadRequest, "invalid_argument", sandbox.ReasonInvalidPath)
	status, reason, body = e.do(t, http.MethodPut, e.keyA, sb.Id, "path=/x&mode=17777", strings.NewReader("x"))
	wantBulk(t, status, reason, body, http.StatusBadRequest, "invalid_argument", sandbox.ReasonInvalidSpec)
	status, reason, body = e.do(t, http.MethodPut, e.keyA, "bad%20id", "path=/x", strings.NewReader("x"))
	wantBulk(t, status, reason, body, http.StatusBadRequest, "invalid_argument", sandbox.ReasonInvalidSpec)
	status, reason, body = e.do(t, http.MethodGet, e.keyA, sb.Id, "path=/missing", nil)
	wantBulk(t, status, reason, body, http.StatusNotFound, "not_found", sandbox.ReasonFileNotFound)
	// A body of unknown size (chunked) is refused: the agent needs the size.
	status, reason, body = e.do(t, http.MethodPut, e.keyA, sb.Id, "path=/x", struct{ io.Reader }{strings.NewReader("x")})
	wantBulk(t, status, reason, body, http.StatusBadRequest, "invalid_argument", sandbox.ReasonInvalidSpec)

	// A cut upload leaves the old file.
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT %s%s/file?%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", server.BulkPrefix, sb.Id, q, e.keyA, 1<<20)
	conn.Write(make([]byte, 1000))
	conn.Close()
	time.Sleep(100 * time.Millisecond)
	status, _, body = e.do(t, http.MethodGet, e.keyA, sb.Id, q, nil)
	if status != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("after a cut upload: %d, %d bytes", status, len(body))
	}

	// Only running sandboxes.
	if _, err := e.rpc(e.keyA).Stop(ctx, connect.NewRequest(&sbxv1.StopSandboxRequest{Id: sb.Id})); err != nil {
		t.Fatal(err)
	}
	status, reason, body = e.do(t, http.MethodGet, e.keyA, sb.Id, q, nil)
	wantBulk(t, status, reason, body, http.StatusBadRequest, "failed_precondition", sandbox.ReasonSandboxNotRunning)
}
