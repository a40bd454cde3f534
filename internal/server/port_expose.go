package server

import (
	"context"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// ExposePort is being built (issue 5).
func (s *sandboxService) ExposePort(ctx context.Context, req *connect.Request[sbxv1.ExposePortRequest]) (*connect.Response[sbxv1.ExposePortResponse], error) {
	return nil, connect.NewError(connect.CodeUnimplemented, nil)
}

// UnexposePort is being built (issue 5).
func (s *sandboxService) UnexposePort(ctx context.Context, req *connect.Request[sbxv1.UnexposePortRequest]) (*connect.Response[sbxv1.UnexposePortResponse], error) {
	return nil, connect.NewError(connect.CodeUnimplemented, nil)
}
