package lifecycle

import (
	"context"
	"maps"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/secrets"
)

// SecretResolver turns a tenant's secret references into the environment
// they inject (env var to value): secrets.Manager. NotFound for a name the
// tenant has not.
type SecretResolver interface {
	Resolve(ctx context.Context, tenantID string, refs []sandbox.SecretRef) (map[string]string, error)
}

// resolveSecrets returns the values req's secrets inject, resolved now, at
// create, so that an unknown name fails the create before anything is
// stored or started. The values live only in memory until the agent has
// them (startInRuntime); the record keeps the references.
func (m *Manager) resolveSecrets(ctx context.Context, tenantID string, req *CreateRequest) (map[string]string, error) {
	if len(req.Secrets) == 0 {
		return nil, nil
	}
	if m.cfg.Secrets == nil {
		return nil, sandbox.FailedPrecondition(sandbox.ReasonSecretsUnavailable, "this server runs without a secret store: create the sandbox without secrets")
	}
	return m.cfg.Secrets.Resolve(ctx, tenantID, req.Secrets)
}

// mergeSecrets puts a session's default secrets under req's own: for one
// env var the request's win.
func mergeSecrets(req *CreateRequest, defaults []sandbox.SecretRef) {
	if len(defaults) == 0 {
		return
	}
	own := make(map[string]bool, len(req.Secrets))
	for _, r := range req.Secrets {
		own[r.Var()] = true
	}
	merged := append([]sandbox.SecretRef(nil), req.Secrets...)
	for _, d := range defaults {
		if !own[d.Var()] {
			merged = append(merged, d)
		}
	}
	req.Secrets = merged
}

// withSecrets returns the start the runtime gets: sb's, with the secret
// values added to its env (a copy: the record's env never holds them).
func withSecrets(start sandbox.StartSpec, values map[string]string) sandbox.StartSpec {
	if len(values) == 0 {
		return start
	}
	env := make(map[string]string, len(start.Env)+len(values))
	maps.Copy(env, start.Env)
	maps.Copy(env, values)
	start.Env = env
	return start
}

func validateSecrets(field string, refs []sandbox.SecretRef, env map[string]string) error {
	return secrets.ValidateRefs(field, refs, env)
}
