package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSecretSetLsRm(t *testing.T) {
	c := newCLI(t)
	// The value comes from stdin, less one trailing newline.
	code, out, errOut := c.run("hf_value\n", "secret", "set", "HF_TOKEN")
	if code != 0 || out != "created secret HF_TOKEN\n" {
		t.Fatalf("secret set: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if v, _ := c.api.SecretValue("HF_TOKEN"); v != "hf_value" {
		t.Fatalf("stored value %q, want hf_value", v)
	}
	code, out, _ = c.run("multi\nline\n\n", "secret", "set", "HF_TOKEN")
	if code != 0 || out != "updated secret HF_TOKEN\n" {
		t.Fatalf("second set: exit %d, stdout %q", code, out)
	}
	if v, _ := c.api.SecretValue("HF_TOKEN"); v != "multi\nline\n" {
		t.Fatalf("stored value %q: only one trailing newline may go", v)
	}
	// Never from argv.
	if code, _, errOut := c.run("", "secret", "set", "HF_TOKEN", "the-value"); code != 2 || !strings.Contains(errOut, "stdin") {
		t.Fatalf("set with a value argument: exit %d, stderr %q; want a usage error pointing to stdin", code, errOut)
	}
	if code, _, errOut := c.run(strings.Repeat("x", 64<<10+1), "secret", "set", "BIG"); code != 2 || !strings.Contains(errOut, "64 KiB") {
		t.Fatalf("oversized value: exit %d, stderr %q", code, errOut)
	}
	c.run("v2", "secret", "set", "A_FIRST")

	out = c.must("secret", "ls")
	if !strings.Contains(out, "NAME") || strings.Index(out, "A_FIRST") > strings.Index(out, "HF_TOKEN") ||
		strings.Contains(out, "multi") || strings.Contains(out, "v2") {
		t.Fatalf("secret ls:\n%s", out)
	}
	var list []secretJSON
	if err := json.Unmarshal([]byte(c.must("secret", "ls", "--json")), &list); err != nil || len(list) != 2 || list[1].Name != "HF_TOKEN" {
		t.Fatalf("secret ls --json: %v, %v", list, err)
	}

	if out := c.must("secret", "rm", "A_FIRST"); out != "deleted secret A_FIRST\n" {
		t.Fatalf("secret rm: %q", out)
	}
	code, _, errOut = c.run("", "secret", "rm", "A_FIRST")
	if code != 1 || !strings.Contains(errOut, "SECRET_NOT_FOUND") {
		t.Fatalf("rm of a missing secret: exit %d, stderr %q", code, errOut)
	}
}

func TestRunSecretFlag(t *testing.T) {
	c := newCLI(t)
	id := strings.TrimSpace(c.must("run", "-d", "--secret", "HF_TOKEN", "--secret", "OPENAI_API_KEY=OPENAI_KEY"))
	got := c.api.SandboxSecrets(id)
	if got != "HF_TOKEN=,OPENAI_API_KEY=OPENAI_KEY" {
		t.Fatalf("create carried secrets %q", got)
	}
	var views []struct {
		Secrets []secretRefJSON `json:"secrets"`
	}
	out := c.must("inspect", id)
	if err := json.Unmarshal([]byte(out), &views); err != nil || len(views) != 1 || len(views[0].Secrets) != 2 ||
		views[0].Secrets[0] != (secretRefJSON{"HF_TOKEN", "HF_TOKEN"}) || views[0].Secrets[1] != (secretRefJSON{"OPENAI_API_KEY", "OPENAI_KEY"}) {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	for _, bad := range []string{"", "=X", "NAME="} {
		if code, _, errOut := c.run("", "run", "-d", "--secret", bad); code != 2 || !strings.Contains(errOut, "NAME=ENV_VAR") {
			t.Errorf("--secret %q: exit %d, stderr %q", bad, code, errOut)
		}
	}
}
