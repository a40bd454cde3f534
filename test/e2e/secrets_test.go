package e2e

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/runtime/local"
)

// TestSecrets runs a server with a busybox pool: a tenant's stored secrets
// reach a warm sandbox's main command and execs as env vars, no response,
// log or file in the data dir shows a value in plaintext, another tenant
// cannot resolve them, and a restarted server (same key file) still can.
func TestSecrets(t *testing.T) {
	s := startServer(t, "--pool", "busybox=1:2")
	c := s.client()
	ctx := ctxT(t, 4*time.Minute)
	waitPool(t, ctx, c, "1 idle", func(p sbx.PoolInfo) bool { return p.Idle == 1 })

	hf, openai := "hf-e2e-7c41f0a9", "sk-e2e-29b8d3e6"
	if _, created, err := c.SetSecret(ctx, "HF_TOKEN", hf); err != nil || !created {
		t.Fatalf("SetSecret: created %v, %v", created, err)
	}
	if _, _, err := c.SetSecret(ctx, "OPENAI_API_KEY", openai); err != nil {
		t.Fatal(err)
	}
	sb, err := c.Run(ctx, sbx.Image("busybox"),
		sbx.Command("sh", "-c", `echo "main:$HF_TOKEN:$OPENAI_KEY"; sleep 300`),
		sbx.Secrets(sbx.Secret{Name: "HF_TOKEN"}, sbx.Secret{Name: "OPENAI_API_KEY", EnvVar: "OPENAI_KEY"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := sb.Exec(ctx, []string{"sh", "-c", `echo "$HF_TOKEN|$OPENAI_KEY|${OPENAI_API_KEY:-unset}"`})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Result()
	if err != nil || string(res.Stdout) != hf+"|"+openai+"|unset\n" {
		t.Fatalf("exec saw %q, %v; want the two secrets", res.Stdout, err)
	}
	var logs bytes.Buffer
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), "\n") && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		logs.Reset()
		sb.Logs(ctx, &logs, &logs, sbx.LogOptions{})
	}
	if logs.String() != "main:"+hf+":"+openai+"\n" {
		t.Errorf("main command printed %q", logs.String())
	}
	info, err := sb.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !claimedWarm(info) {
		t.Errorf("%s was not served from the pool: %+v", sb.ID(), info.Transitions)
	}
	if len(info.Secrets) != 2 || info.Secrets[1] != (sbx.Secret{Name: "OPENAI_API_KEY", EnvVar: "OPENAI_KEY"}) || len(info.Env) != 0 {
		t.Errorf("Info: secrets %+v, env %v; want the references and no env", info.Secrets, info.Env)
	}

	// Another tenant cannot resolve them.
	other := s.client(s.newTenant("other"))
	if _, err := other.Run(ctx, sbx.Image("busybox"), sbx.Secrets(sbx.Secret{Name: "HF_TOKEN"})); !errors.Is(err, sbx.ErrNotFound) || sbx.ReasonOf(err) != "SECRET_NOT_FOUND" {
		t.Errorf("other tenant's create with HF_TOKEN: %v, want NotFound SECRET_NOT_FOUND", err)
	}

	// The key file is private; no value lands in the server log or, in
	// plaintext, in the data dir outside the sandbox's own files.
	if fi, err := os.Stat(filepath.Join(s.dataDir, "secrets.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets.key: %v, %v; want mode 0600", fi, err)
	}
	if strings.Contains(s.log(), hf) || strings.Contains(s.log(), openai) {
		t.Errorf("the server log holds a secret value")
	}
	for _, name := range []string{"sbx.db", "sbx.db-wal"} {
		if b, _ := os.ReadFile(filepath.Join(s.dataDir, name)); bytes.Contains(b, []byte(hf)) {
			t.Errorf("%s holds a secret value in plaintext", name)
		}
	}
	// The sandboxes' files: state dirs in the data dir, the rest in the
	// run root (a tmpfs).
	for _, root := range []string{filepath.Join(s.dataDir, "sandboxes"), local.RunRootOf(s.dataDir)} {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			// main.log is the main command's own output, which printed them.
			if err != nil || d.IsDir() || !d.Type().IsRegular() || d.Name() == "main.log" {
				return nil
			}
			if fi, err := d.Info(); err == nil && fi.Size() < 1<<20 {
				if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(hf)) {
					t.Errorf("%s holds a secret value", path)
				}
			}
			return nil
		})
	}

	// A restarted server reads the same key and resolves the secrets.
	s.terminate()
	s.start()
	sb2, err := c.Run(ctx, sbx.Image("busybox"), sbx.Command("sh", "-c", `test "$HF_TOKEN" = `+hf),
		sbx.Secrets(sbx.Secret{Name: "HF_TOKEN"}))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := sb2.WaitUntilComplete(ctx); err != nil || info.State != sbx.StateCompleted {
		t.Errorf("after restart: %+v, %v; want the secret resolved (COMPLETED)", info, err)
	}
	if list, err := c.ListSecrets(ctx); err != nil || len(list) != 2 || list[0].Name != "HF_TOKEN" {
		t.Errorf("ListSecrets: %+v, %v", list, err)
	}
	if err := c.DeleteSecret(ctx, "HF_TOKEN"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(ctx, sbx.Image("busybox"), sbx.Secrets(sbx.Secret{Name: "HF_TOKEN"})); !errors.Is(err, sbx.ErrNotFound) {
		t.Errorf("create with a deleted secret: %v, want NotFound", err)
	}
	// The CLI: the value from stdin, --secret NAME=ENV_VAR on run.
	if out, errOut, code := s.cli("cli-value-3f9a\n", "secret", "set", "CLI_TOKEN"); code != 0 || out != "created secret CLI_TOKEN\n" {
		t.Fatalf("sbx secret set: %d %q %q", code, out, errOut)
	}
	if out, errOut, code := s.cli("", "run", "--rm", "--image", "busybox", "--secret", "CLI_TOKEN=TOK", "--", "sh", "-c", "echo $TOK"); code != 0 || out != "cli-value-3f9a\n" {
		t.Errorf("sbx run --secret: %d %q %q", code, out, errOut)
	}
	if out, _, code := s.cli("", "secret", "ls"); code != 0 || !strings.Contains(out, "CLI_TOKEN") || strings.Contains(out, "cli-value") {
		t.Errorf("sbx secret ls: %d %q", code, out)
	}
	if _, errOut, code := s.cli("", "secret", "rm", "NO_SUCH"); code != 1 || !strings.Contains(errOut, "SECRET_NOT_FOUND") {
		t.Errorf("sbx secret rm NO_SUCH: %d %q", code, errOut)
	}

	// Without the pool the server removes its idle sandboxes, so the
	// harness's cleanup finds nothing left.
	s.terminate()
	s.args = withoutPoolFlags(s.args)
	s.start()
}
