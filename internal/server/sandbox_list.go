package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// List implements SandboxService.List.
func (s *sandboxService) List(ctx context.Context, req *connect.Request[sbxv1.ListSandboxesRequest]) (*connect.Response[sbxv1.ListSandboxesResponse], error) {
	r := req.Msg
	f := store.SandboxFilter{
		SessionID:       r.GetSessionId(),
		Tags:            r.GetTags(),
		IncludeTerminal: r.GetIncludeTerminal(),
		PageSize:        int(r.GetPageSize()),
		PageToken:       r.GetPageToken(),
	}
	if len(r.GetStates()) > len(sandbox.States) {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "%d states given: there are only %d", len(r.GetStates()), len(sandbox.States))
	}
	for _, ws := range r.GetStates() {
		st, ok := stateFromWire(ws)
		if !ok {
			return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "state %v is not a sandbox state: use one of PENDING, CREATING, RUNNING, TERMINATING, COMPLETED, FAILED, TERMINATED", ws)
		}
		f.States = append(f.States, st)
	}
	page, next, err := s.m.List(ctx, tenant(ctx), f)
	if err != nil {
		return nil, err
	}
	resp := &sbxv1.ListSandboxesResponse{NextPageToken: next}
	for _, sb := range page {
		resp.Sandboxes = append(resp.Sandboxes, s.sandboxToWire(sb))
	}
	return connect.NewResponse(resp), nil
}
