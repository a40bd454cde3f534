// Package fakeapi is an in-memory implementation of the public sbx API
// (sbx.v1 SandboxService, SessionService and ImageService) for the unit tests of the Go
// SDK and the CLI. It encodes errors exactly as internal/server does (Connect
// code, google.rpc.ErrorInfo reason, Sbx-Reason metadata, RetryInfo). It is
// not part of any binary; end-to-end tests use the real server.
package fakeapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
)

// Server implements the public API in memory. Its sandboxes start on the
// first Wait; image "bad" fails to start; image "quota" is refused with
// QUOTA_EXCEEDED; image "busy:N" is refused N times with CREATE_QUEUE_FULL
// (retry delay 10 ms), then created; a main command "exit N" ends with code N and the log
// "main output\n" (stdout) and "main error\n" (stderr). Its "processes"
// are a few built-in commands:
//
//	echo ARGS...        prints ARGS to stdout, exits 0
//	fail CODE MSG       prints MSG to stderr, exits CODE
//	cat                 copies stdin to stdout until stdin is closed
//	sleep               waits until signalled (exit 137)
type Server struct {
	sbxv1connect.UnimplementedSandboxServiceHandler

	apiKey string

	mu         sync.Mutex
	next       int
	sandboxes  map[string]*fakeSandbox
	busy       map[string]int // CREATE_QUEUE_FULL answers given per "busy:N" image
	sessions   map[string]*sbxv1.Session
	heartbeats map[string]int
	creates    int
	procs      map[string]*fakeProc
	images     map[string]*sbxv1.Image
	dials      int
	url        string
	secrets    map[string]string // secrets.go
}

type fakeSandbox struct {
	w     *sbxv1.Sandbox
	files map[string][]byte
	modes map[string]uint32
	log   []byte
}

type fakeProc struct {
	stdin  chan []byte
	closed chan struct{}
	once   sync.Once
	signal chan string
}

// Key is the API key the fake accepts.
const Key = "test-key"

// Start starts a fake on 127.0.0.1 and returns it with its URL; it stops
// when the test ends.
func Start(t testing.TB) (*Server, string) {
	t.Helper()
	f := &Server{
		apiKey:    Key,
		sandboxes: map[string]*fakeSandbox{}, sessions: map[string]*sbxv1.Session{},
		heartbeats: map[string]int{}, procs: map[string]*fakeProc{}, images: map[string]*sbxv1.Image{},
	}
	mux := http.NewServeMux()
	auth := connect.WithInterceptors(f)
	mux.Handle(sbxv1connect.NewSandboxServiceHandler(f, auth))
	mux.Handle(sbxv1connect.NewSessionServiceHandler(fakeSessions{f: f}, auth))
	mux.Handle(sbxv1connect.NewImageServiceHandler(fakeImages{f: f}, auth))
	mux.Handle(sbxv1connect.NewSecretServiceHandler(fakeSecrets{f: f}, auth))
	mux.Handle(sbxv1connect.NewAdminServiceHandler(newFakeAdmin(), auth))
	mux.HandleFunc("GET /proxy-tcp/{id}/{port}", f.proxyTCP)
	srv := httptest.NewUnstartedServer(mux)
	// HTTP/1.1 and h2c, like sbx serve, so gRPC clients work too.
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &p
	srv.Start()
	f.url = srv.URL
	t.Cleanup(srv.Close)
	return f, srv.URL
}

// fakeErr encodes an error the way internal/server does.
func fakeErr(code connect.Code, reason, msg string, retry time.Duration) error {
	e := connect.NewError(code, errors.New(msg))
	e.Meta().Set("sbx-reason", reason)
	if d, err := connect.NewErrorDetail(&errdetails.ErrorInfo{Reason: reason, Domain: "sbx.run"}); err == nil {
		e.AddDetail(d)
	}
	if retry > 0 {
		e.Meta().Set("retry-after", strconv.Itoa(int(retry/time.Second)))
		if d, err := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)}); err == nil {
			e.AddDetail(d)
		}
	}
	return e
}

// The auth interceptor: every call needs the Bearer key.
func (f *Server) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Header().Get("Authorization") != "Bearer "+f.apiKey {
			return nil, fakeErr(connect.CodeUnauthenticated, "UNAUTHENTICATED", "unknown API key", 0)
		}
		return next(ctx, req)
	}
}

func (f *Server) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (f *Server) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if conn.RequestHeader().Get("Authorization") != "Bearer "+f.apiKey {
			return fakeErr(connect.CodeUnauthenticated, "UNAUTHENTICATED", "unknown API key", 0)
		}
		return next(ctx, conn)
	}
}

func (f *Server) get(id string) (*fakeSandbox, error) {
	sb, ok := f.sandboxes[id]
	if !ok {
		return nil, fakeErr(connect.CodeNotFound, "SANDBOX_NOT_FOUND", fmt.Sprintf("sandbox %q does not exist: list sandboxes with `sbx ls`", id), 0)
	}
	return sb, nil
}

// Create implements SandboxService.Create.
func (f *Server) Create(_ context.Context, req *connect.Request[sbxv1.CreateSandboxRequest]) (*connect.Response[sbxv1.CreateSandboxResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := req.Msg
	if m.GetImage() == "quota" {
		return nil, fakeErr(connect.CodeResourceExhausted, "QUOTA_EXCEEDED", "tenant has 10 sandboxes running, its quota: stop some or retry later", 3*time.Second)
	}
	if n, ok := strings.CutPrefix(m.GetImage(), "busy:"); ok {
		if want, _ := strconv.Atoi(n); f.busy[m.GetImage()] < want {
			if f.busy == nil {
				f.busy = map[string]int{}
			}
			f.busy[m.GetImage()]++
			return nil, fakeErr(connect.CodeResourceExhausted, "CREATE_QUEUE_FULL", "the server is creating as many sandboxes as it can: retry after the delay", 10*time.Millisecond)
		}
	}
	if m.MaxLifetimeSeconds != nil && m.GetMaxLifetimeSeconds() > 86400 {
		return nil, fakeErr(connect.CodeInvalidArgument, "LIFETIME_OUT_OF_RANGE", "max_lifetime_seconds must be 1..86400", 0)
	}
	if m.GetRequestId() != "" {
		for _, sb := range f.sandboxes {
			if sb.w.GetRequestId() == m.GetRequestId() {
				return connect.NewResponse(&sbxv1.CreateSandboxResponse{Sandbox: sb.w}), nil
			}
		}
	}
	if m.GetSessionId() != "" {
		s, ok := f.sessions[m.GetSessionId()]
		if !ok || s.ClosedAt != nil {
			return nil, fakeErr(connect.CodeFailedPrecondition, "SESSION_CLOSED", "session closed", 0)
		}
	}
	f.next++
	f.creates++
	id := fmt.Sprintf("sb-%d", f.next)
	img := m.GetImage()
	if img == "" {
		img = "python:3.11"
	}
	w := &sbxv1.Sandbox{
		Id: id, Image: img, Command: m.GetCommand(), Env: m.GetEnv(), WorkingDir: m.GetWorkingDir(), Tags: m.GetTags(),
		Resources: m.GetResources(), MaxLifetimeSeconds: 600, State: sbxv1.SandboxState_SANDBOX_STATE_PENDING,
		Reason: "requested", CreatedAt: timestamppb.Now(), RequestId: m.GetRequestId(), SessionId: m.GetSessionId(),
		Secrets: m.GetSecrets(),
	}
	for _, p := range m.GetPorts() {
		if err := badPort(p.GetPort()); err != nil {
			return nil, err
		}
		setPort(w, f.exposed(id, p))
	}
	sb := &fakeSandbox{w: w, files: map[string][]byte{}, modes: map[string]uint32{}}
	for _, mf := range m.GetMountedFiles() {
		sb.files[mf.GetPath()] = mf.GetContent()
		sb.modes[mf.GetPath()] = mf.GetMode()
	}
	f.sandboxes[id] = sb
	return connect.NewResponse(&sbxv1.CreateSandboxResponse{Sandbox: w}), nil
}

// advance moves a sandbox along its lifecycle: PENDING starts (or fails
// for image "bad"); a main command "exit N" ends it with code N, writing
// "main output" to its log.
func (f *Server) advance(sb *fakeSandbox, terminal bool) {
	w := sb.w
	if w.State == sbxv1.SandboxState_SANDBOX_STATE_PENDING {
		if w.Image == "bad" {
			f.end(sb, sbxv1.SandboxState_SANDBOX_STATE_FAILED, "start failed: image \"bad\" not found", nil)
			return
		}
		w.State, w.Reason, w.StartedAt = sbxv1.SandboxState_SANDBOX_STATE_RUNNING, "started", timestamppb.Now()
		w.Address = "10.203.0.2"
	}
	if w.State == sbxv1.SandboxState_SANDBOX_STATE_RUNNING && terminal && len(w.Command) == 2 && w.Command[0] == "exit" {
		code, _ := strconv.Atoi(w.Command[1])
		sb.log = append(sb.log, "main output\n"...)
		st := sbxv1.SandboxState_SANDBOX_STATE_COMPLETED
		if code != 0 {
			st = sbxv1.SandboxState_SANDBOX_STATE_FAILED
		}
		c := int32(code)
		f.end(sb, st, "main command exited", &c)
	}
}

func (f *Server) end(sb *fakeSandbox, st sbxv1.SandboxState, reason string, code *int32) {
	sb.w.State, sb.w.Reason, sb.w.EndedAt = st, reason, timestamppb.Now()
	if code != nil {
		sb.w.ExitCode = code
		sb.w.Exit = &sbxv1.ExitStatus{Code: *code}
	}
}

func (f *Server) Get(_ context.Context, req *connect.Request[sbxv1.GetSandboxRequest]) (*connect.Response[sbxv1.GetSandboxResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, err := f.get(req.Msg.GetId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.GetSandboxResponse{Sandbox: sb.w}), nil
}

func (f *Server) List(_ context.Context, req *connect.Request[sbxv1.ListSandboxesRequest]) (*connect.Response[sbxv1.ListSandboxesResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id := range f.sandboxes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var all []*sbxv1.Sandbox
next:
	for _, id := range ids {
		w := f.sandboxes[id].w
		terminal := w.State >= sbxv1.SandboxState_SANDBOX_STATE_COMPLETED
		if terminal && !req.Msg.GetIncludeTerminal() {
			continue
		}
		for _, tag := range req.Msg.GetTags() {
			if !contains(w.Tags, tag) {
				continue next
			}
		}
		if s := req.Msg.GetSessionId(); s != "" && w.SessionId != s {
			continue
		}
		all = append(all, w)
	}
	// Pages of two, to exercise paging.
	start, _ := strconv.Atoi(req.Msg.GetPageToken())
	end := min(start+2, len(all))
	resp := &sbxv1.ListSandboxesResponse{Sandboxes: all[start:end]}
	if end < len(all) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return connect.NewResponse(resp), nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (f *Server) Stop(_ context.Context, req *connect.Request[sbxv1.StopSandboxRequest]) (*connect.Response[sbxv1.StopSandboxResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, err := f.get(req.Msg.GetId())
	if err != nil {
		return nil, err
	}
	if sb.w.State < sbxv1.SandboxState_SANDBOX_STATE_COMPLETED {
		f.end(sb, sbxv1.SandboxState_SANDBOX_STATE_TERMINATED, "stopped by user", nil)
	}
	return connect.NewResponse(&sbxv1.StopSandboxResponse{Sandbox: sb.w}), nil
}

func (f *Server) Delete(_ context.Context, req *connect.Request[sbxv1.DeleteSandboxRequest]) (*connect.Response[sbxv1.DeleteSandboxResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.get(req.Msg.GetId()); err != nil {
		return nil, err
	}
	delete(f.sandboxes, req.Msg.GetId())
	return connect.NewResponse(&sbxv1.DeleteSandboxResponse{}), nil
}

func (f *Server) Wait(_ context.Context, req *connect.Request[sbxv1.WaitSandboxRequest]) (*connect.Response[sbxv1.WaitSandboxResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, err := f.get(req.Msg.GetId())
	if err != nil {
		return nil, err
	}
	terminal := req.Msg.GetUntil() != sbxv1.WaitCondition_WAIT_CONDITION_RUNNING
	f.advance(sb, terminal)
	timedOut := terminal && sb.w.State < sbxv1.SandboxState_SANDBOX_STATE_COMPLETED
	return connect.NewResponse(&sbxv1.WaitSandboxResponse{Sandbox: sb.w, TimedOut: timedOut}), nil
}

func (f *Server) running(id string) (*fakeSandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, err := f.get(id)
	if err != nil {
		return nil, err
	}
	if sb.w.State != sbxv1.SandboxState_SANDBOX_STATE_RUNNING {
		return nil, fakeErr(connect.CodeFailedPrecondition, "SANDBOX_NOT_RUNNING", "sandbox "+id+" is not running", 0)
	}
	return sb, nil
}
