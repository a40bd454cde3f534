package sbx

import (
	"context"
	"errors"
	"testing"
)

func TestSecretsCalls(t *testing.T) {
	f, c := newFakeServer(t)
	ctx := context.Background()
	if _, created, err := c.SetSecret(ctx, "HF_TOKEN", "v1"); err != nil || !created {
		t.Fatalf("SetSecret: %v, %v", created, err)
	}
	if _, created, err := c.SetSecret(ctx, "HF_TOKEN", "v2"); err != nil || created {
		t.Fatalf("second SetSecret: %v, %v", created, err)
	}
	if v, _ := f.SecretValue("HF_TOKEN"); v != "v2" {
		t.Fatalf("server has %q", v)
	}
	list, err := c.ListSecrets(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "HF_TOKEN" || list[0].CreatedAt.IsZero() {
		t.Fatalf("ListSecrets: %+v, %v", list, err)
	}
	if err := c.DeleteSecret(ctx, "HF_TOKEN"); err != nil {
		t.Fatal(err)
	}
	err = c.DeleteSecret(ctx, "HF_TOKEN")
	if !errors.Is(err, ErrNotFound) || ReasonOf(err) != "SECRET_NOT_FOUND" {
		t.Fatalf("second DeleteSecret: %v", err)
	}

	sb, err := c.Run(ctx, Secrets(Secret{Name: "HF_TOKEN"}), Secrets(Secret{Name: "OPENAI_API_KEY", EnvVar: "OPENAI_KEY"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.SandboxSecrets(sb.ID()); got != "HF_TOKEN=,OPENAI_API_KEY=OPENAI_KEY" {
		t.Fatalf("create carried %q", got)
	}
	if s := sb.Info().Secrets; len(s) != 2 || s[1] != (Secret{Name: "OPENAI_API_KEY", EnvVar: "OPENAI_KEY"}) {
		t.Fatalf("Info().Secrets = %+v", s)
	}
}
