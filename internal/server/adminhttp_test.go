package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/lifecycle/lifecycletest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/server"
)

// TestRequireAdmin checks the guard of /metrics: no key or an unknown one
// is 401, a tenant that is no admin 403, an admin gets through.
func TestRequireAdmin(t *testing.T) {
	ctx := context.Background()
	_, st := startManager(t, lifecycletest.NewRuntime(), lifecycle.Config{})
	admin, adminKey, err := auth.NewTenant(ctx, st, "admin")
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := auth.NewTenant(ctx, st, "other")
	if err != nil {
		t.Fatal(err)
	}
	h := server.RequireAdmin(auth.NewAuthenticator(st), []string{admin.ID}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("metrics\n"))
	}))
	for key, want := range map[string]int{"": 401, "sbx_0000": 401, otherKey: 403, adminKey: 200} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/metrics", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("key %.12q: %d %q, want %d", key, rec.Code, rec.Body, want)
		}
		if want == 403 && rec.Header().Get(server.ReasonHeader) != sandbox.ReasonAdminRequired {
			t.Errorf("403 without reason %s: %v", sandbox.ReasonAdminRequired, rec.Header())
		}
	}
}
