package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/secrets"
)

// secretService implements sbxv1connect.SecretServiceHandler: the
// caller's tenant's secret store. No response carries a value.
type secretService struct {
	*deps
	secrets *secrets.Manager
}

var _ sbxv1connect.SecretServiceHandler = (*secretService)(nil)

// Set implements SecretService.Set.
func (s *secretService) Set(ctx context.Context, req *connect.Request[sbxv1.SetSecretRequest]) (*connect.Response[sbxv1.SetSecretResponse], error) {
	info, created, err := s.secrets.Set(ctx, tenant(ctx), req.Msg.GetName(), req.Msg.GetValue())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.SetSecretResponse{Secret: secretInfoToWire(info), Created: created}), nil
}

// List implements SecretService.List.
func (s *secretService) List(ctx context.Context, _ *connect.Request[sbxv1.ListSecretsRequest]) (*connect.Response[sbxv1.ListSecretsResponse], error) {
	infos, err := s.secrets.List(ctx, tenant(ctx))
	if err != nil {
		return nil, err
	}
	resp := &sbxv1.ListSecretsResponse{Secrets: make([]*sbxv1.SecretInfo, 0, len(infos))}
	for _, i := range infos {
		resp.Secrets = append(resp.Secrets, secretInfoToWire(i))
	}
	return connect.NewResponse(resp), nil
}

// Delete implements SecretService.Delete.
func (s *secretService) Delete(ctx context.Context, req *connect.Request[sbxv1.DeleteSecretRequest]) (*connect.Response[sbxv1.DeleteSecretResponse], error) {
	if err := s.secrets.Delete(ctx, tenant(ctx), req.Msg.GetName()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.DeleteSecretResponse{}), nil
}

func secretInfoToWire(i secrets.Info) *sbxv1.SecretInfo {
	return &sbxv1.SecretInfo{Name: i.Name, CreatedAt: ts(i.CreatedAt), UpdatedAt: ts(i.UpdatedAt)}
}

// secretRefsFromWire converts a Create's or session defaults' secrets
// (field names them in errors); the lifecycle manager validates them.
func secretRefsFromWire(field string, refs []*sbxv1.SecretRef) ([]sandbox.SecretRef, error) {
	if len(refs) > secrets.MaxPerSandbox {
		return nil, invalidf("%s has %d entries: at most %d are allowed", field, len(refs), secrets.MaxPerSandbox)
	}
	var out []sandbox.SecretRef
	for _, r := range refs {
		out = append(out, sandbox.SecretRef{Name: r.GetName(), EnvVar: r.GetEnvVar()})
	}
	return out, nil
}

// secretRefsToWire reports references with env_var filled in.
func secretRefsToWire(refs []sandbox.SecretRef) []*sbxv1.SecretRef {
	var out []*sbxv1.SecretRef
	for _, r := range refs {
		out = append(out, &sbxv1.SecretRef{Name: r.Name, EnvVar: r.Var()})
	}
	return out
}
