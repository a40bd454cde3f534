package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/lifecycle"
)

// wantSecretRefs checks a sandbox's reported secrets (names, env vars).
func wantSecretRefs(t *testing.T, sb *sbxv1.Sandbox, want ...string) {
	t.Helper()
	var got []string
	for _, r := range sb.Secrets {
		got = append(got, r.Name+"="+r.EnvVar)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("sandbox %s secrets = %v, want %v", sb.Id, got, want)
	}
}

func TestSecretsInjected(t *testing.T) {
	e := newSecretsEnv(t, nil)
	ctx := context.Background()
	e.set(t, e.keyA, "HF_TOKEN", hfValue)
	e.set(t, e.keyA, "OPENAI_API_KEY", openaiValue)
	c := e.sandboxes(e.keyA)
	sb := running(t, c, &sbxv1.CreateSandboxRequest{
		Env:     map[string]string{"PLAIN": "1"},
		Secrets: []*sbxv1.SecretRef{{Name: "HF_TOKEN"}, {Name: "OPENAI_API_KEY", EnvVar: "OPENAI_KEY"}},
	})
	// The runtime (the agent) got the values as env vars.
	got := e.rt.StartSpec(sb.Id).Env
	if got["HF_TOKEN"] != hfValue || got["OPENAI_KEY"] != openaiValue || got["PLAIN"] != "1" {
		t.Fatalf("runtime start env = %v, want HF_TOKEN, OPENAI_KEY and PLAIN", got)
	}
	if _, ok := got["OPENAI_API_KEY"]; ok {
		t.Errorf("the secret was injected under its name as well as its env_var")
	}
	// No API response shows a value; they show the references.
	wantSecretRefs(t, sb, "HF_TOKEN=HF_TOKEN", "OPENAI_API_KEY=OPENAI_KEY")
	if sb.Env["HF_TOKEN"] != "" || len(sb.Env) != 1 {
		t.Errorf("Wait's sandbox env = %v, want only PLAIN", sb.Env)
	}
	noValue(t, "Wait's sandbox", sb, hfValue, openaiValue)
	g, err := c.Get(ctx, connect.NewRequest(&sbxv1.GetSandboxRequest{Id: sb.Id}))
	if err != nil {
		t.Fatal(err)
	}
	noValue(t, "Get's response", g.Msg, hfValue, openaiValue)
	wantSecretRefs(t, g.Msg.Sandbox, "HF_TOKEN=HF_TOKEN", "OPENAI_API_KEY=OPENAI_KEY")
	l, err := c.List(ctx, connect.NewRequest(&sbxv1.ListSandboxesRequest{}))
	if err != nil || len(l.Msg.Sandboxes) != 1 {
		t.Fatalf("List: %v, %v", l, err)
	}
	noValue(t, "List's response", l.Msg, hfValue, openaiValue)
	// Nor does the stored record.
	rec, err := e.st.GetSandbox(ctx, "", sb.Id)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rec)
	if strings.Contains(string(b), hfValue) || strings.Contains(string(b), openaiValue) {
		t.Errorf("the sandbox record holds a secret value: %s", b)
	}

	// Replacing or deleting a secret later leaves the running sandbox as is.
	e.set(t, e.keyA, "HF_TOKEN", "new-value")
	if got := e.rt.StartSpec(sb.Id).Env["HF_TOKEN"]; got != hfValue {
		t.Errorf("running sandbox's HF_TOKEN changed to %q", got)
	}
	// A new sandbox gets the new value.
	sb2 := running(t, c, &sbxv1.CreateSandboxRequest{Secrets: []*sbxv1.SecretRef{{Name: "HF_TOKEN"}}})
	if got := e.rt.StartSpec(sb2.Id).Env["HF_TOKEN"]; got != "new-value" {
		t.Errorf("new sandbox's HF_TOKEN = %q, want the new value", got)
	}
}

func TestSecretsUnknownAndIsolation(t *testing.T) {
	e := newSecretsEnv(t, nil)
	ctx := context.Background()
	e.set(t, e.keyA, "A_ONLY", "tenant-a-secret-value")

	// Tenant B cannot resolve, list or delete tenant A's secret.
	_, err := e.sandboxes(e.keyB).Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{
		Secrets: []*sbxv1.SecretRef{{Name: "A_ONLY"}}}))
	ce := wantCode(t, err, connect.CodeNotFound, "SECRET_NOT_FOUND")
	if !strings.Contains(ce.Message(), "A_ONLY") {
		t.Errorf("NOT_FOUND message %q does not name the secret", ce.Message())
	}
	if strings.Contains(ce.Error(), "tenant-a-secret-value") {
		t.Errorf("the error carries the value")
	}
	l, err := e.secrets(e.keyB).List(ctx, connect.NewRequest(&sbxv1.ListSecretsRequest{}))
	if err != nil || len(l.Msg.Secrets) != 0 {
		t.Errorf("tenant B lists %v, %v; want nothing", l, err)
	}
	_, err = e.secrets(e.keyB).Delete(ctx, connect.NewRequest(&sbxv1.DeleteSecretRequest{Name: "A_ONLY"}))
	wantCode(t, err, connect.CodeNotFound, "SECRET_NOT_FOUND")

	// Tenant A: one unknown name among known ones fails the whole create.
	_, err = e.sandboxes(e.keyA).Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{
		Secrets: []*sbxv1.SecretRef{{Name: "A_ONLY"}, {Name: "MISSING_ONE"}}}))
	ce = wantCode(t, err, connect.CodeNotFound, "SECRET_NOT_FOUND")
	if !strings.Contains(ce.Message(), "secrets[1]") || !strings.Contains(ce.Message(), "MISSING_ONE") {
		t.Errorf("NOT_FOUND message %q, want it to name secrets[1] MISSING_ONE", ce.Message())
	}
	// Nothing was started or recorded.
	for _, key := range []string{e.keyA, e.keyB} {
		l, err := e.sandboxes(key).List(ctx, connect.NewRequest(&sbxv1.ListSandboxesRequest{IncludeTerminal: true}))
		if err != nil || len(l.Msg.Sandboxes) != 0 {
			t.Errorf("failed creates left records: %v, %v", l, err)
		}
	}
	if e.rt.Len() != 0 {
		t.Errorf("failed creates left %d sandboxes in the runtime", e.rt.Len())
	}
}

func TestSecretsSessionDefaults(t *testing.T) {
	e := newSecretsEnv(t, nil)
	ctx := context.Background()
	e.set(t, e.keyA, "HF_TOKEN", hfValue)
	e.set(t, e.keyA, "OPENAI_API_KEY", openaiValue)
	e.set(t, e.keyA, "OTHER", "other-value")
	s, err := e.sessions(e.keyA).Create(ctx, connect.NewRequest(&sbxv1.CreateSessionRequest{Defaults: &sbxv1.SessionDefaults{
		Secrets: []*sbxv1.SecretRef{{Name: "HF_TOKEN"}, {Name: "OTHER", EnvVar: "SHARED"}}}}))
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Msg.Session.Defaults; len(d.Secrets) != 2 || d.Secrets[1].EnvVar != "SHARED" {
		t.Fatalf("session defaults: %v", d)
	}
	noValue(t, "the session", s.Msg, hfValue, "other-value")
	// The request's secret for SHARED wins over the session's.
	sb := running(t, e.sandboxes(e.keyA), &sbxv1.CreateSandboxRequest{SessionId: s.Msg.Session.Id,
		Secrets: []*sbxv1.SecretRef{{Name: "OPENAI_API_KEY", EnvVar: "SHARED"}}})
	env := e.rt.StartSpec(sb.Id).Env
	if env["HF_TOKEN"] != hfValue || env["SHARED"] != openaiValue {
		t.Fatalf("runtime env = %v, want HF_TOKEN from the session and SHARED from the request", env)
	}
	wantSecretRefs(t, sb, "OPENAI_API_KEY=SHARED", "HF_TOKEN=HF_TOKEN")

	// A session default naming a secret that is gone fails the create.
	if _, err := e.secrets(e.keyA).Delete(ctx, connect.NewRequest(&sbxv1.DeleteSecretRequest{Name: "HF_TOKEN"})); err != nil {
		t.Fatal(err)
	}
	_, err = e.sandboxes(e.keyA).Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{SessionId: s.Msg.Session.Id}))
	wantCode(t, err, connect.CodeNotFound, "SECRET_NOT_FOUND")
}

func TestSecretsWarmPoolClaim(t *testing.T) {
	e := newSecretsEnv(t, []lifecycle.PoolConfig{{Image: "busybox", MinIdle: 2, Max: 2}})
	ctx := context.Background()
	e.set(t, e.keyA, "HF_TOKEN", hfValue)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		resp, err := e.pools(e.keyA).List(ctx, connect.NewRequest(&sbxv1.ListPoolsRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Msg.Pools[0].Idle == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool never filled: %v", resp.Msg.Pools[0])
		}
	}
	c := e.sandboxes(e.keyA)
	withSecret := running(t, c, &sbxv1.CreateSandboxRequest{Image: "busybox", Secrets: []*sbxv1.SecretRef{{Name: "HF_TOKEN"}}})
	plain := running(t, c, &sbxv1.CreateSandboxRequest{Image: "busybox"})
	resp, err := e.pools(e.keyA).List(ctx, connect.NewRequest(&sbxv1.ListPoolsRequest{}))
	if err != nil || resp.Msg.Pools[0].Hits != 2 {
		t.Fatalf("both creates should be pool hits: %v, %v", resp, err)
	}
	if got := e.rt.StartSpec(withSecret.Id).Env["HF_TOKEN"]; got != hfValue {
		t.Errorf("claimed pool sandbox's HF_TOKEN = %q, want the secret", got)
	}
	if _, ok := e.rt.StartSpec(plain.Id).Env["HF_TOKEN"]; ok {
		t.Errorf("a claim without secrets got another request's secret")
	}
	noValue(t, "the claimed sandbox", withSecret, hfValue)
}
