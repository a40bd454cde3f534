package server

import (
	"net/http"
	"slices"

	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// RequireAdmin lets through to h (a plain HTTP endpoint, such as
// /metrics) only requests that carry the key of one of admins: 401
// without a valid key, 403 with another tenant's. The metrics name every
// tenant with its sandboxes' counts and usage, which no tenant may read
// of another.
func RequireAdmin(a *auth.Authenticator, admins []string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tenantID, err := a.Authenticate(r.Context(), r.Header.Get("Authorization"))
		if err != nil {
			w.Header().Set(ReasonHeader, sandbox.ReasonOf(err))
			w.Header().Set("WWW-Authenticate", `Bearer realm="sbx"`)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if !slices.Contains(admins, tenantID) {
			w.Header().Set(ReasonHeader, sandbox.ReasonAdminRequired)
			http.Error(w, "only admin tenants may read the server's metrics (they name every tenant): use an admin's key (`sbx serve --admin TENANT_ID`), or have the operator serve them on a private address with --metrics-listen", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
