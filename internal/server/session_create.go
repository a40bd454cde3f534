package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Create implements SessionService.Create.
func (s *sessionService) Create(ctx context.Context, req *connect.Request[sbxv1.CreateSessionRequest]) (*connect.Response[sbxv1.CreateSessionResponse], error) {
	r := req.Msg
	wd := r.GetDefaults()
	d := sandbox.SessionDefaults{
		Image:     wd.GetImage(),
		Tags:      wd.GetTags(),
		Env:       wd.GetEnv(),
		Resources: resourcesFromWire(wd.GetResources()),
		Network:   networkFromWire(wd.GetNetwork()),
	}
	secretRefs, err := secretRefsFromWire("defaults.secrets", wd.GetSecrets())
	if err != nil {
		return nil, err
	}
	d.Secrets = secretRefs
	if wd != nil && wd.MaxLifetimeSeconds != nil {
		d.MaxLifetime = seconds(wd.GetMaxLifetimeSeconds())
		if d.MaxLifetime <= 0 {
			// Zero would read as "unset" in the domain; reject it as Create does.
			d.MaxLifetime = -1
		}
	}
	sess, err := s.m.CreateSession(ctx, tenant(ctx), d, seconds(r.GetLeaseSeconds()))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.CreateSessionResponse{Session: sessionToWire(sess)}), nil
}
