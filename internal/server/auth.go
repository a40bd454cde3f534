package server

import (
	"context"

	"connectrpc.com/connect"

	"github.com/sbx-run/sbx/internal/auth"
)

// authInterceptor resolves the Bearer API key of every call to its tenant
// and puts the tenant id in the context; no key or an unknown one is
// Unauthenticated.
func authInterceptor(a *auth.Authenticator) connect.Interceptor { return &authn{a: a} }

type authn struct{ a *auth.Authenticator }

func (i *authn) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		tenantID, err := i.a.Authenticate(ctx, req.Header().Get("Authorization"))
		if err != nil {
			return nil, err
		}
		return next(auth.WithTenant(ctx, tenantID), req)
	}
}

func (i *authn) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *authn) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		tenantID, err := i.a.Authenticate(ctx, conn.RequestHeader().Get("Authorization"))
		if err != nil {
			return err
		}
		return next(auth.WithTenant(ctx, tenantID), conn)
	}
}
