package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/sbx-run/sbx/internal/auth"
)

// authInterceptor resolves the Bearer API key of every call to its tenant
// and puts the tenant id in the context; no key or an unknown one is
// Unauthenticated.
func authInterceptor(a *auth.Authenticator) connect.Interceptor { return &authn{a: a} }

type authn struct{ a *auth.Authenticator }

// authFirst checks the API key of every RPC before next reads anything of
// its request: connect decodes a unary call's message (up to
// maxMessageBytes) before any interceptor runs, so without it a client
// with no key could make the server read and parse 16 MiB bodies. The
// answer is the RPC protocol's own error (Connect, gRPC or gRPC-Web). The
// tenant goes into the request's context, where the interceptor finds it.
// Requests that are no RPC of sbx's services (/sbx.v1.*; /healthz) pass
// unchanged.
func authFirst(a *auth.Authenticator, log *slog.Logger, next http.Handler) http.Handler {
	ew := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/sbx.") || !ew.IsSupported(r) {
			next.ServeHTTP(w, r)
			return
		}
		tenantID, err := a.Authenticate(r.Context(), r.Header.Get("Authorization"))
		if err != nil {
			_ = ew.Write(w, r, toConnect(log, err))
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.WithTenant(r.Context(), tenantID)))
	})
}

// authenticate is the tenant authFirst found, or (for handlers mounted
// without it) the key's.
func (i *authn) authenticate(ctx context.Context, header string) (string, error) {
	if id, ok := auth.TenantFrom(ctx); ok {
		return id, nil
	}
	return i.a.Authenticate(ctx, header)
}

func (i *authn) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		tenantID, err := i.authenticate(ctx, req.Header().Get("Authorization"))
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
		tenantID, err := i.authenticate(ctx, conn.RequestHeader().Get("Authorization"))
		if err != nil {
			return err
		}
		return next(auth.WithTenant(ctx, tenantID), conn)
	}
}
