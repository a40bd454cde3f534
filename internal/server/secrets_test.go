package server_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/lifecycle/lifecycletest"
	"github.com/sbx-run/sbx/internal/secrets"
	"github.com/sbx-run/sbx/internal/server"
	"github.com/sbx-run/sbx/internal/store/sqlite"
)

// secretsEnv is env with the SecretService and a known database path, so
// tests can look for plaintext in the files.
type secretsEnv struct {
	*env
	dbPath string
}

func newSecretsEnv(t *testing.T, pools []lifecycle.PoolConfig) *secretsEnv {
	t.Helper()
	ctx := context.Background()
	dbPath := filepath.Join(t.TempDir(), "sbx.db")
	st, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := bytes.Repeat([]byte{7}, secrets.KeySize)
	c, err := secrets.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	sm := secrets.NewManager(st, c)
	e := &env{rt: lifecycletest.NewRuntime(), st: st}
	m, err := lifecycle.New(e.rt, st, lifecycle.Config{Linger: time.Hour, SweepInterval: 10 * time.Millisecond,
		Pools: pools, Secrets: sm, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if _, e.keyA, err = auth.NewTenant(ctx, st, "a"); err != nil {
		t.Fatal(err)
	}
	if _, e.keyB, err = auth.NewTenant(ctx, st, "b"); err != nil {
		t.Fatal(err)
	}
	h := server.New(server.Config{Manager: m, Auth: auth.NewAuthenticator(st), Logger: quietLog, Secrets: sm})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = server.NewHTTPServer("", h).Protocols
	srv.Start()
	t.Cleanup(srv.Close)
	e.url = srv.URL
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	e.h2c = &http.Client{Transport: &http.Transport{Protocols: &p}}
	return &secretsEnv{env: e, dbPath: dbPath}
}

func (e *secretsEnv) secrets(key string) sbxv1connect.SecretServiceClient {
	return sbxv1connect.NewSecretServiceClient(e.httpClient(key), e.url)
}

func (e *secretsEnv) set(t *testing.T, key, name, value string) *sbxv1.SetSecretResponse {
	t.Helper()
	resp, err := e.secrets(key).Set(context.Background(), connect.NewRequest(&sbxv1.SetSecretRequest{Name: name, Value: value}))
	if err != nil {
		t.Fatalf("Set %s: %v", name, err)
	}
	return resp.Msg
}

// noValue fails if any of values shows up in msg's wire encoding.
func noValue(t *testing.T, what string, msg proto.Message, values ...string) {
	t.Helper()
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		if bytes.Contains(b, []byte(v)) {
			t.Errorf("%s carries the secret value %q", what, v)
		}
	}
}

const (
	hfValue     = "hf_value_5b1f0c"
	openaiValue = "sk-openai-9d2e71"
)

func TestSecretsSetListDelete(t *testing.T) {
	e := newSecretsEnv(t, nil)
	ctx := context.Background()
	c := e.secrets(e.keyA)
	first := e.set(t, e.keyA, "HF_TOKEN", hfValue)
	if !first.Created || first.Secret.Name != "HF_TOKEN" || first.Secret.CreatedAt == nil {
		t.Fatalf("first Set: %v", first)
	}
	noValue(t, "Set's response", first, hfValue)
	again := e.set(t, e.keyA, "HF_TOKEN", "replaced-value")
	if again.Created || !again.Secret.CreatedAt.AsTime().Equal(first.Secret.CreatedAt.AsTime()) {
		t.Fatalf("replacing Set: %v (first %v)", again, first)
	}
	e.set(t, e.keyA, "A_TOKEN", openaiValue)
	list, err := c.List(ctx, connect.NewRequest(&sbxv1.ListSecretsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Msg.Secrets) != 2 || list.Msg.Secrets[0].Name != "A_TOKEN" || list.Msg.Secrets[1].Name != "HF_TOKEN" {
		t.Fatalf("List: %v", list.Msg)
	}
	noValue(t, "List's response", list.Msg, hfValue, "replaced-value", openaiValue)

	if _, err := c.Delete(ctx, connect.NewRequest(&sbxv1.DeleteSecretRequest{Name: "A_TOKEN"})); err != nil {
		t.Fatal(err)
	}
	_, err = c.Delete(ctx, connect.NewRequest(&sbxv1.DeleteSecretRequest{Name: "A_TOKEN"}))
	wantCode(t, err, connect.CodeNotFound, "SECRET_NOT_FOUND")

	// The database holds no value in plaintext: only sealed ones.
	for _, f := range []string{e.dbPath, e.dbPath + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("replaced-value")) || bytes.Contains(b, []byte(openaiValue)) {
			t.Errorf("%s holds a secret value in plaintext", filepath.Base(f))
		}
	}

	// Unauthenticated callers get nothing.
	_, err = e.secrets("wrong-key").List(ctx, connect.NewRequest(&sbxv1.ListSecretsRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHENTICATED")
}

func TestSecretsBounds(t *testing.T) {
	e := newSecretsEnv(t, nil)
	ctx := context.Background()
	c := e.secrets(e.keyA)
	for _, tc := range []struct {
		name, value, wantMsg string
	}{
		{"", "v", "name is empty"},
		{"1BAD", "v", `name "1BAD" is invalid`},
		{"BAD-NAME", "v", `name "BAD-NAME" is invalid`},
		{strings.Repeat("A", secrets.MaxNameLen+1), "v", "at most 128 characters"},
		{"BIG", strings.Repeat("x", secrets.MaxValueBytes+1), "at most 65536"},
		{"NUL", "a\x00b", "NUL"},
	} {
		_, err := c.Set(ctx, connect.NewRequest(&sbxv1.SetSecretRequest{Name: tc.name, Value: tc.value}))
		ce := wantCode(t, err, connect.CodeInvalidArgument, "INVALID_ARGUMENT")
		if !strings.Contains(ce.Message(), tc.wantMsg) {
			t.Errorf("Set(%.20q): %q, want it to say %q", tc.name, ce.Message(), tc.wantMsg)
		}
	}
	// At most 64 KiB is fine.
	e.set(t, e.keyA, "MAX_SIZE", strings.Repeat("x", secrets.MaxValueBytes))
	e.set(t, e.keyA, "HF_TOKEN", hfValue)

	sb := e.sandboxes(e.keyA)
	many := make([]*sbxv1.SecretRef, secrets.MaxPerSandbox+1)
	for i := range many {
		many[i] = &sbxv1.SecretRef{Name: "HF_TOKEN", EnvVar: "V" + strings.Repeat("X", i)}
	}
	for _, tc := range []struct {
		what    string
		req     *sbxv1.CreateSandboxRequest
		wantMsg string
	}{
		{"reserved env var", &sbxv1.CreateSandboxRequest{Secrets: []*sbxv1.SecretRef{{Name: "HF_TOKEN", EnvVar: "PATH"}}}, "secrets[0].env_var injects PATH, which sbx reserves"},
		{"SBX_ prefix", &sbxv1.CreateSandboxRequest{Secrets: []*sbxv1.SecretRef{{Name: "HF_TOKEN", EnvVar: "SBX_X"}}}, "reserves"},
		{"bad env var", &sbxv1.CreateSandboxRequest{Secrets: []*sbxv1.SecretRef{{Name: "HF_TOKEN", EnvVar: "A=B"}}}, `secrets[0].env_var "A=B" is invalid`},
		{"bad name", &sbxv1.CreateSandboxRequest{Secrets: []*sbxv1.SecretRef{{Name: "HF_TOKEN"}, {Name: "x y"}}}, `secrets[1].name "x y" is invalid`},
		{"env var twice", &sbxv1.CreateSandboxRequest{Secrets: []*sbxv1.SecretRef{{Name: "HF_TOKEN"}, {Name: "MAX_SIZE", EnvVar: "HF_TOKEN"}}}, "secrets[1].env_var and secrets[0] both inject HF_TOKEN"},
		{"also in env", &sbxv1.CreateSandboxRequest{Env: map[string]string{"HF_TOKEN": "x"}, Secrets: []*sbxv1.SecretRef{{Name: "HF_TOKEN"}}}, "which env sets too"},
		{"too many", &sbxv1.CreateSandboxRequest{Secrets: many}, "at most 100"},
	} {
		_, err := sb.Create(ctx, connect.NewRequest(tc.req))
		ce := wantCode(t, err, connect.CodeInvalidArgument, "INVALID_ARGUMENT")
		if !strings.Contains(ce.Message(), tc.wantMsg) {
			t.Errorf("%s: %q, want it to say %q", tc.what, ce.Message(), tc.wantMsg)
		}
	}
	// Session defaults are checked at session create.
	_, err := e.sessions(e.keyA).Create(ctx, connect.NewRequest(&sbxv1.CreateSessionRequest{Defaults: &sbxv1.SessionDefaults{
		Secrets: []*sbxv1.SecretRef{{Name: "HF_TOKEN", EnvVar: "HOME"}}}}))
	ce := wantCode(t, err, connect.CodeInvalidArgument, "INVALID_ARGUMENT")
	if !strings.Contains(ce.Message(), "defaults.secrets[0].env_var") {
		t.Errorf("session defaults: %q, want it to name defaults.secrets[0].env_var", ce.Message())
	}
	if e.rt.Len() != 0 {
		t.Errorf("refused creates left %d sandboxes in the runtime", e.rt.Len())
	}
}

func TestSecretsTenantLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("sets 1000 secrets")
	}
	e := newSecretsEnv(t, nil)
	ctx := context.Background()
	c := e.secrets(e.keyA)
	for i := range secrets.MaxPerTenant {
		if _, err := c.Set(ctx, connect.NewRequest(&sbxv1.SetSecretRequest{Name: "S" + strconv.Itoa(i), Value: "v"})); err != nil {
			t.Fatalf("Set #%d: %v", i, err)
		}
	}
	_, err := c.Set(ctx, connect.NewRequest(&sbxv1.SetSecretRequest{Name: "ONE_MORE", Value: "v"}))
	wantCode(t, err, connect.CodeResourceExhausted, "TOO_MANY_SECRETS")
	// Tenant B has its own count.
	e.set(t, e.keyB, "ONE_MORE", "v")
}

func TestSecretsWithoutStore(t *testing.T) {
	e := newEnv(t, options{}) // no secret store configured
	ctx := context.Background()
	_, err := e.sandboxes(e.keyA).Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{
		Secrets: []*sbxv1.SecretRef{{Name: "HF_TOKEN"}}}))
	wantCode(t, err, connect.CodeFailedPrecondition, "SECRETS_UNAVAILABLE")
	_, err = sbxv1connect.NewSecretServiceClient(e.httpClient(e.keyA), e.url).List(ctx, connect.NewRequest(&sbxv1.ListSecretsRequest{}))
	if connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Errorf("SecretService on a server without a store: %v, want unimplemented", err)
	}
	if e.rt.Len() != 0 {
		t.Errorf("the refused create left %d sandboxes", e.rt.Len())
	}
}
