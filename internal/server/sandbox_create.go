package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Create implements SandboxService.Create.
func (s *sandboxService) Create(ctx context.Context, req *connect.Request[sbxv1.CreateSandboxRequest]) (*connect.Response[sbxv1.CreateSandboxResponse], error) {
	r := req.Msg
	cr := lifecycle.CreateRequest{
		Image:      r.GetImage(),
		Command:    r.GetCommand(),
		Env:        r.GetEnv(),
		WorkingDir: r.GetWorkingDir(),
		User:       r.GetUser(),
		Tags:       r.GetTags(),
		Resources:  resourcesFromWire(r.GetResources()),
		RequestID:  r.GetRequestId(),
		Network:    networkFromWire(r.GetNetwork()),
		SessionID:  r.GetSessionId(),
	}
	secretRefs, err := secretRefsFromWire("secrets", r.GetSecrets())
	if err != nil {
		return nil, err
	}
	cr.Secrets = secretRefs
	if r.MaxLifetimeSeconds != nil {
		d := seconds(r.GetMaxLifetimeSeconds())
		cr.MaxLifetime = &d
	}
	if len(r.GetMountedFiles()) > lifecycle.MaxFiles {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "%d mounted files given: at most %d are allowed", len(r.GetMountedFiles()), lifecycle.MaxFiles)
	}
	for i, f := range r.GetMountedFiles() {
		if f.GetMode() > 0o7777 {
			return nil, invalidf("mounted_files[%d].mode %o has bits beyond the permission, setuid, setgid and sticky bits (at most 7777)", i, f.GetMode())
		}
		cr.Files = append(cr.Files, sandbox.File{Path: f.GetPath(), Content: f.GetContent(), Mode: fileMode(f.GetMode())})
	}
	if len(r.GetPorts()) > 0 {
		if err := s.requireProxy(); err != nil {
			return nil, err
		}
		if len(r.GetPorts()) > lifecycle.MaxPorts {
			return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "ports has %d entries: at most %d are allowed", len(r.GetPorts()), lifecycle.MaxPorts)
		}
		for _, p := range r.GetPorts() {
			cr.Ports = append(cr.Ports, sandbox.Port{Port: int(p.GetPort()), Public: p.GetPublic()})
		}
	}
	sb, err := s.m.Create(ctx, tenant(ctx), cr)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&sbxv1.CreateSandboxResponse{Sandbox: s.sandboxToWire(sb)}), nil
}
