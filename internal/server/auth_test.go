package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/server"
)

func TestAuthAndTenancy(t *testing.T) {
	e := newEnv(t, options{})
	ctx := context.Background()
	for name, key := range map[string]string{"no key": "", "unknown key": "sbx_0000", "huge key": strings.Repeat("k", 10000)} {
		_, err := e.sandboxes(key).List(ctx, connect.NewRequest(&sbxv1.ListSandboxesRequest{}))
		t.Run(name, func(t *testing.T) { wantCode(t, err, connect.CodeUnauthenticated, sandbox.ReasonUnauthenticated) })
	}
	s, err := e.sandboxes("").Exec(ctx, connect.NewRequest(&sbxv1.ExecRequest{SandboxId: "sb-x", Command: []string{"echo"}}))
	if err == nil {
		for s.Receive() {
		}
		err = s.Err()
	}
	wantCode(t, err, connect.CodeUnauthenticated, sandbox.ReasonUnauthenticated)

	a, b := e.sandboxes(e.keyA), e.sandboxes(e.keyB)
	sb := running(t, a, &sbxv1.CreateSandboxRequest{})
	_, err = b.Get(ctx, connect.NewRequest(&sbxv1.GetSandboxRequest{Id: sb.Id}))
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonSandboxNotFound)
	_, err = b.Stop(ctx, connect.NewRequest(&sbxv1.StopSandboxRequest{Id: sb.Id}))
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonSandboxNotFound)
	rs, err := b.ReadFile(ctx, connect.NewRequest(&sbxv1.ReadFileRequest{SandboxId: sb.Id, Path: "/etc/passwd"}))
	if err == nil {
		for rs.Receive() {
		}
		err = rs.Err()
	}
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonSandboxNotFound)
	list, err := b.List(ctx, connect.NewRequest(&sbxv1.ListSandboxesRequest{IncludeTerminal: true}))
	if err != nil || len(list.Msg.Sandboxes) != 0 {
		t.Fatalf("tenant b lists %v (%v)", list, err)
	}

	sess, err := e.sessions(e.keyA).Create(ctx, connect.NewRequest(&sbxv1.CreateSessionRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.sessions(e.keyB).Close(ctx, connect.NewRequest(&sbxv1.CloseSessionRequest{Id: sess.Msg.Session.Id}))
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonSessionNotFound)
	_, err = b.Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{SessionId: sess.Msg.Session.Id}))
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonSessionNotFound)
}

// TestPlainJSONPost drives unary calls the way curl does.
func TestPlainJSONPost(t *testing.T) {
	e := newEnv(t, options{})
	post := func(method, key, body string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", e.url+"/sbx.v1.SandboxService/"+method, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s: not JSON: %s", method, b)
		}
		return resp, out
	}
	resp, out := post("Create", e.keyA, `{"image":"busybox:1","command":["echo","hi"],"maxLifetimeSeconds":"60","tags":["curl"]}`)
	sb, _ := out["sandbox"].(map[string]any)
	if resp.StatusCode != 200 || sb == nil || sb["id"] == "" || sb["maxLifetimeSeconds"] != "60" {
		t.Fatalf("Create: %d %v", resp.StatusCode, out)
	}
	resp, out = post("Wait", e.keyA, `{"id":"`+sb["id"].(string)+`","until":"WAIT_CONDITION_TERMINAL"}`)
	if got := out["sandbox"].(map[string]any)["state"]; resp.StatusCode != 200 || got != "SANDBOX_STATE_COMPLETED" {
		t.Fatalf("Wait: %d %v", resp.StatusCode, out)
	}

	resp, out = post("Get", e.keyA, `{"id":"sb-nosuch"}`)
	if resp.StatusCode != 404 || out["code"] != "not_found" || resp.Header.Get(server.ReasonHeader) != sandbox.ReasonSandboxNotFound {
		t.Fatalf("Get unknown: %d %v %v", resp.StatusCode, out, resp.Header)
	}
	resp, out = post("List", "", `{}`)
	if resp.StatusCode != 401 || out["code"] != "unauthenticated" || !strings.Contains(out["message"].(string), "Authorization: Bearer") {
		t.Fatalf("List without key: %d %v", resp.StatusCode, out)
	}

	h, err := http.Get(e.url + "/healthz")
	if err != nil || h.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", err, h)
	}
	h.Body.Close()
}

// TestAuthBeforeBody checks that a call without a valid key is refused
// before its body is read: a body that is no message at all gets
// unauthenticated, not a decoding error, over Connect and gRPC alike.
func TestAuthBeforeBody(t *testing.T) {
	e := newEnv(t, options{})
	for _, key := range []string{"", "sbx_0000"} {
		req, _ := http.NewRequest("POST", e.url+"/sbx.v1.SandboxService/List", strings.NewReader("\xff\xff\xff not protobuf"))
		req.Header.Set("Content-Type", "application/proto")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.Contains(string(b), "unauthenticated") || resp.Header.Get(server.ReasonHeader) != sandbox.ReasonUnauthenticated {
			t.Errorf("key %q: %d %s %v", key, resp.StatusCode, b, resp.Header)
		}
	}
	// With a valid key the same body is a decoding error: the check above
	// did not just refuse everything.
	req, _ := http.NewRequest("POST", e.url+"/sbx.v1.SandboxService/List", strings.NewReader("\xff\xff\xff not protobuf"))
	req.Header.Set("Content-Type", "application/proto")
	req.Header.Set("Authorization", "Bearer "+e.keyA)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 401 || resp.StatusCode == 200 {
		t.Errorf("a valid key with a broken body: %d", resp.StatusCode)
	}
	for name, opt := range map[string]connect.ClientOption{"grpc": connect.WithGRPC(), "grpc-web": connect.WithGRPCWeb()} {
		_, err := e.sandboxes("", opt).List(context.Background(), connect.NewRequest(&sbxv1.ListSandboxesRequest{}))
		t.Run(name, func(t *testing.T) { wantCode(t, err, connect.CodeUnauthenticated, sandbox.ReasonUnauthenticated) })
	}
	if _, err := e.sandboxes(e.keyA, connect.WithGRPC()).List(context.Background(), connect.NewRequest(&sbxv1.ListSandboxesRequest{})); err != nil {
		t.Errorf("grpc with a valid key: %v", err)
	}
}
