package lifecycle

import (
	"context"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// TestMaxOpenSessions checks the bound on a tenant's open sessions: past
// it CreateSession is refused with RESOURCE_EXHAUSTED and a retry delay,
// another tenant is not affected, and closing one makes room.
func TestMaxOpenSessions(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	var first *sandbox.Session
	for i := 0; i < MaxOpenSessions; i++ {
		s, err := e.m.CreateSession(ctx, tenant, sandbox.SessionDefaults{}, 0)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		if first == nil {
			first = s
		}
	}
	_, err := e.m.CreateSession(ctx, tenant, sandbox.SessionDefaults{}, 0)
	wantErr(t, err, sandbox.ErrResourceExhausted, sandbox.ReasonQuotaExceeded)
	if sandbox.RetryAfterOf(err) <= 0 {
		t.Errorf("no retry delay: %v", err)
	}
	if _, err := e.m.CreateSession(ctx, "t-other", sandbox.SessionDefaults{}, 0); err != nil {
		t.Errorf("another tenant: %v", err)
	}
	if _, err := e.m.CloseSession(ctx, tenant, first.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.CreateSession(ctx, tenant, sandbox.SessionDefaults{}, 0); err != nil {
		t.Errorf("after closing one: %v", err)
	}
}
