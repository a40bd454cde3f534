package fakeapi

import (
	"context"
	"sort"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
)

// fakeSecrets implements SecretService in memory. Names are not
// validated here (the real server does that); a Create's secrets are
// recorded on its sandbox as given.
type fakeSecrets struct {
	sbxv1connect.UnimplementedSecretServiceHandler
	f *Server
}

// SecretValue returns the value stored for name, for tests to check what
// the client sent.
func (f *Server) SecretValue(name string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.secrets[name]
	return v, ok
}

func (s fakeSecrets) Set(_ context.Context, req *connect.Request[sbxv1.SetSecretRequest]) (*connect.Response[sbxv1.SetSecretResponse], error) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.secrets == nil {
		s.f.secrets = map[string]string{}
	}
	_, existed := s.f.secrets[req.Msg.GetName()]
	s.f.secrets[req.Msg.GetName()] = req.Msg.GetValue()
	return connect.NewResponse(&sbxv1.SetSecretResponse{Created: !existed,
		Secret: &sbxv1.SecretInfo{Name: req.Msg.GetName(), CreatedAt: timestamppb.Now(), UpdatedAt: timestamppb.Now()}}), nil
}

func (s fakeSecrets) List(context.Context, *connect.Request[sbxv1.ListSecretsRequest]) (*connect.Response[sbxv1.ListSecretsResponse], error) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	resp := &sbxv1.ListSecretsResponse{}
	for name := range s.f.secrets {
		resp.Secrets = append(resp.Secrets, &sbxv1.SecretInfo{Name: name, CreatedAt: timestamppb.Now(), UpdatedAt: timestamppb.Now()})
	}
	sort.Slice(resp.Secrets, func(i, j int) bool { return resp.Secrets[i].Name < resp.Secrets[j].Name })
	return connect.NewResponse(resp), nil
}

func (s fakeSecrets) Delete(_ context.Context, req *connect.Request[sbxv1.DeleteSecretRequest]) (*connect.Response[sbxv1.DeleteSecretResponse], error) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if _, ok := s.f.secrets[req.Msg.GetName()]; !ok {
		return nil, fakeErr(connect.CodeNotFound, "SECRET_NOT_FOUND", "no secret named "+req.Msg.GetName(), 0)
	}
	delete(s.f.secrets, req.Msg.GetName())
	return connect.NewResponse(&sbxv1.DeleteSecretResponse{}), nil
}

// SandboxSecrets returns the secrets sandbox id was created with, as
// "NAME=ENV_VAR,..." in request order.
func (f *Server) SandboxSecrets(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sandboxes[id]
	if !ok {
		return ""
	}
	var parts []string
	for _, r := range sb.w.GetSecrets() {
		parts = append(parts, r.GetName()+"="+r.GetEnvVar())
	}
	return strings.Join(parts, ",")
}
