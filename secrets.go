package sbx

import (
	"context"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// Secret names a secret of the tenant's secret store (SetSecret) to inject
// into a sandbox as an environment variable: in its main command and every
// exec. The server resolves the value when the sandbox is created, so it
// never travels in the create request, and no call returns it.
type Secret struct {
	// Name of the stored secret.
	Name string
	// EnvVar is the variable it is injected as; empty means Name.
	EnvVar string
}

// Secrets injects stored secrets into the sandbox as environment variables
// (see Secret). Several Secrets options add up. A name the tenant has no
// secret by fails Run with ErrNotFound (reason SECRET_NOT_FOUND), and
// nothing is started.
func Secrets(secrets ...Secret) RunOption {
	return runOpt(func(c *runConfig) { c.secrets = append(c.secrets, secrets...) })
}

// SecretInfo describes a stored secret; values are never returned.
type SecretInfo struct {
	Name      string
	CreatedAt time.Time
	// UpdatedAt is when the value was last set.
	UpdatedAt time.Time
}

// SetSecret stores value as the tenant's secret name, replacing its value
// if it exists, and reports whether it is new. Names are environment
// variable names ([A-Za-z_][A-Za-z0-9_]*, at most 128 characters); values
// are at most 64 KiB; a tenant has at most 1000 secrets.
func (c *Client) SetSecret(ctx context.Context, name, value string) (info SecretInfo, created bool, err error) {
	resp, err := c.secrets.Set(ctx, connect.NewRequest(&sbxv1.SetSecretRequest{Name: name, Value: value}))
	if err != nil {
		return SecretInfo{}, false, c.fromWire(err)
	}
	return secretInfoFromWire(resp.Msg.GetSecret()), resp.Msg.GetCreated(), nil
}

// ListSecrets returns the tenant's secrets sorted by name, without values.
func (c *Client) ListSecrets(ctx context.Context) ([]SecretInfo, error) {
	resp, err := c.secrets.List(ctx, connect.NewRequest(&sbxv1.ListSecretsRequest{}))
	if err != nil {
		return nil, c.fromWire(err)
	}
	out := make([]SecretInfo, 0, len(resp.Msg.GetSecrets()))
	for _, s := range resp.Msg.GetSecrets() {
		out = append(out, secretInfoFromWire(s))
	}
	return out, nil
}

// DeleteSecret removes the tenant's secret name (ErrNotFound if there is
// none). Running sandboxes keep the value they got.
func (c *Client) DeleteSecret(ctx context.Context, name string) error {
	_, err := c.secrets.Delete(ctx, connect.NewRequest(&sbxv1.DeleteSecretRequest{Name: name}))
	return c.fromWire(err)
}

func secretInfoFromWire(s *sbxv1.SecretInfo) SecretInfo {
	return SecretInfo{Name: s.GetName(), CreatedAt: timeFromWire(s.GetCreatedAt()), UpdatedAt: timeFromWire(s.GetUpdatedAt())}
}

func secretsToWire(secrets []Secret) []*sbxv1.SecretRef {
	var out []*sbxv1.SecretRef
	for _, s := range secrets {
		out = append(out, &sbxv1.SecretRef{Name: s.Name, EnvVar: s.EnvVar})
	}
	return out
}

func secretsFromWire(refs []*sbxv1.SecretRef) []Secret {
	var out []Secret
	for _, r := range refs {
		out = append(out, Secret{Name: r.GetName(), EnvVar: r.GetEnvVar()})
	}
	return out
}
