package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/lifecycle/lifecycletest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/server"
	"github.com/sbx-run/sbx/internal/store"
	"github.com/sbx-run/sbx/internal/store/sqlite"
)

type env struct {
	url        string
	rt         *lifecycletest.Runtime
	st         store.Store
	keyA, keyB string
	h2c        *http.Client
}

type options struct {
	quota       int
	outputLimit int64
	// images, when set, serves the ImageService with tenant a as its only
	// image admin; maxImport bounds imports.
	images    server.ImageStore
	maxImport int64
	importDir string
	// pools are the manager's warm pools.
	pools []lifecycle.PoolConfig
	// maxCalls bounds each tenant's calls in flight (0: the default).
	maxCalls int
}

// quietLog discards what the server and the manager log in tests.
var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// startManager opens a SQLite store in a temporary dir and starts a
// lifecycle manager on rt with cfg (and quietLog); both close with the test.
func startManager(t testing.TB, rt sandbox.Runtime, cfg lifecycle.Config) (*lifecycle.Manager, store.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.Logger = quietLog
	m, err := lifecycle.New(rt, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, st
}

func newEnv(t testing.TB, o options) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{rt: lifecycletest.NewRuntime()}
	m, st := startManager(t, e.rt, lifecycle.Config{Linger: time.Hour, SweepInterval: 10 * time.Millisecond,
		MaxSandboxesPerTenant: o.quota, Pools: o.pools})
	e.st = st
	quiet := quietLog
	tenantA, keyA, err := auth.NewTenant(ctx, e.st, "a")
	if err != nil {
		t.Fatal(err)
	}
	e.keyA = keyA
	if _, e.keyB, err = auth.NewTenant(ctx, e.st, "b"); err != nil {
		t.Fatal(err)
	}
	h := server.New(server.Config{Manager: m, Auth: auth.NewAuthenticator(e.st), Logger: quiet, ExecOutputLimit: o.outputLimit,
		Images: o.images, ImageAdmins: []string{tenantA.ID}, ImportDir: o.importDir, MaxImportBytes: o.maxImport,
		Calls: server.NewCallLimit(o.maxCalls)})
	srv := httptest.NewUnstartedServer(h)
	hs := server.NewHTTPServer("", h)
	srv.Config.Protocols = hs.Protocols
	srv.Start()
	t.Cleanup(srv.Close)
	e.url = srv.URL

	// An HTTP/2-without-TLS client, as gRPC clients use.
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	e.h2c = &http.Client{Transport: &http.Transport{Protocols: &p}}
	return e
}

// bearer adds an Authorization header to every request.
type bearer struct {
	key  string
	next http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if b.key != "" {
		r.Header.Set("Authorization", "Bearer "+b.key)
	}
	return b.next.RoundTrip(r)
}

func (e *env) httpClient(key string) *http.Client {
	return &http.Client{Transport: bearer{key: key, next: e.h2c.Transport}}
}

func (e *env) sandboxes(key string, opts ...connect.ClientOption) sbxv1connect.SandboxServiceClient {
	return sbxv1connect.NewSandboxServiceClient(e.httpClient(key), e.url, opts...)
}

func (e *env) imageClient(key string, opts ...connect.ClientOption) sbxv1connect.ImageServiceClient {
	return sbxv1connect.NewImageServiceClient(e.httpClient(key), e.url, opts...)
}

func (e *env) pools(key string, opts ...connect.ClientOption) sbxv1connect.PoolServiceClient {
	return sbxv1connect.NewPoolServiceClient(e.httpClient(key), e.url, opts...)
}

func (e *env) sessions(key string, opts ...connect.ClientOption) sbxv1connect.SessionServiceClient {
	return sbxv1connect.NewSessionServiceClient(e.httpClient(key), e.url, opts...)
}

// running creates an idle sandbox and waits for it to run.
func running(t *testing.T, c sbxv1connect.SandboxServiceClient, req *sbxv1.CreateSandboxRequest) *sbxv1.Sandbox {
	t.Helper()
	ctx := context.Background()
	cr, err := c.Create(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	w, err := c.Wait(ctx, connect.NewRequest(&sbxv1.WaitSandboxRequest{Id: cr.Msg.Sandbox.Id, Until: sbxv1.WaitCondition_WAIT_CONDITION_RUNNING}))
	if err != nil || w.Msg.TimedOut {
		t.Fatalf("Wait: %v", err)
	}
	return w.Msg.Sandbox
}

// wantCode checks an error's code and its ErrorInfo reason and Sbx-Reason.
func wantCode(t *testing.T, err error, code connect.Code, reason string) *connect.Error {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
	if got := ce.Meta().Get(server.ReasonHeader); got != reason {
		t.Fatalf("Sbx-Reason %q, want %q (%v)", got, reason, err)
	}
	found := false
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok && info.Reason == reason && info.Domain == server.ErrorDomain {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("no ErrorInfo detail with reason %s in %v", reason, err)
	}
	return ce
}

// collect reads an exec stream to its end.
type execResult struct {
	execID         string
	stdout, stderr []byte
	exit           *sbxv1.ExecExit
}

func collect(t *testing.T, recv func() (*sbxv1.ExecEvent, error)) execResult {
	t.Helper()
	var r execResult
	for {
		ev, err := recv()
		if errors.Is(err, io.EOF) {
			return r
		}
		if err != nil {
			t.Fatalf("exec stream: %v", err)
		}
		switch x := ev.Event.(type) {
		case *sbxv1.ExecEvent_Started:
			r.execID = x.Started.ExecId
		case *sbxv1.ExecEvent_Stdout:
			r.stdout = append(r.stdout, x.Stdout...)
		case *sbxv1.ExecEvent_Stderr:
			r.stderr = append(r.stderr, x.Stderr...)
		case *sbxv1.ExecEvent_Exit:
			r.exit = x.Exit
		}
	}
}

func serverStream[T any](s *connect.ServerStreamForClient[T]) func() (*T, error) {
	return func() (*T, error) {
		if s.Receive() {
			return s.Msg(), nil
		}
		if err := s.Err(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
}
