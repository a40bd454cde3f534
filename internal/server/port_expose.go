package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// ExposePort implements SandboxService.ExposePort.
func (s *sandboxService) ExposePort(ctx context.Context, req *connect.Request[sbxv1.ExposePortRequest]) (*connect.Response[sbxv1.ExposePortResponse], error) {
	if err := s.requireProxy(); err != nil {
		return nil, err
	}
	spec := req.Msg.GetPort()
	if spec == nil {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "port is missing: give the port to publish, e.g. {\"port\": 8080}")
	}
	before, _ := s.m.Get(ctx, tenant(ctx), req.Msg.GetSandboxId())
	sb, p, err := s.m.ExposePort(ctx, tenant(ctx), req.Msg.GetSandboxId(), int(spec.GetPort()), spec.GetPublic())
	if err != nil {
		return nil, err
	}
	s.ports.Forget(sb.ID)
	// A visibility change cuts connections let in under the old rules.
	if before != nil {
		for _, old := range before.Ports {
			if old.Port == p.Port && old.Public != p.Public {
				s.ports.CloseConns(sb.ID, p.Port)
			}
		}
	}
	return connect.NewResponse(&sbxv1.ExposePortResponse{Port: s.portToWire(sb.ID, p)}), nil
}

// UnexposePort implements SandboxService.UnexposePort.
func (s *sandboxService) UnexposePort(ctx context.Context, req *connect.Request[sbxv1.UnexposePortRequest]) (*connect.Response[sbxv1.UnexposePortResponse], error) {
	sb, err := s.m.UnexposePort(ctx, tenant(ctx), req.Msg.GetSandboxId(), int(req.Msg.GetPort()))
	if err != nil {
		return nil, err
	}
	if s.ports != nil {
		s.ports.CloseConns(sb.ID, int(req.Msg.GetPort()))
	}
	return connect.NewResponse(&sbxv1.UnexposePortResponse{}), nil
}

// requireProxy fails with NETWORK_REQUIRED when this server cannot publish
// ports.
func (d *deps) requireProxy() error {
	if d.ports == nil || !d.ports.Enabled() {
		return sandbox.FailedPrecondition(sandbox.ReasonNetworkRequired,
			"this server runs without sandbox networking, so no port can be published: start sbx serve with --network bridge")
	}
	return nil
}
