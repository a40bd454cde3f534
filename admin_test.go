package sbx

import (
	"context"
	"errors"
	"testing"
)

func TestAdminCalls(t *testing.T) {
	_, c := newFakeServer(t)
	ctx := context.Background()
	tn, key, err := c.CreateTenant(ctx, "team", 5)
	if err != nil || tn.ID == "" || tn.Name != "team" || tn.MaxSandboxes != 5 || tn.CreatedAt.IsZero() ||
		key.TenantID != tn.ID || key.Secret == "" || key.ID == "" {
		t.Fatalf("CreateTenant: %+v %+v %v", tn, key, err)
	}
	if _, _, err := c.CreateTenant(ctx, "denied", 0); !errors.Is(err, ErrPermissionDenied) || ReasonOf(err) != "ADMIN_REQUIRED" {
		t.Fatalf("non-admin CreateTenant: %v", err)
	}
	if _, _, err := c.CreateTenant(ctx, "big", 1<<40); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("huge quota: %v", err)
	}
	list, err := c.ListTenants(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListTenants: %+v %v", list, err)
	}
	if got, err := c.SetTenantQuota(ctx, tn.ID, 9); err != nil || got.MaxSandboxes != 9 {
		t.Fatalf("SetTenantQuota: %+v %v", got, err)
	}
	if got, err := c.GetTenant(ctx, tn.ID); err != nil || got.MaxSandboxes != 9 {
		t.Fatalf("GetTenant: %+v %v", got, err)
	}
	k2, err := c.CreateAPIKey(ctx, tn.ID, "ci")
	if err != nil || k2.Label != "ci" || k2.Secret == "" {
		t.Fatalf("CreateAPIKey: %+v %v", k2, err)
	}
	keys, err := c.ListAPIKeys(ctx, tn.ID)
	if err != nil || len(keys) != 2 {
		t.Fatalf("ListAPIKeys: %+v %v", keys, err)
	}
	if err := c.RevokeAPIKey(ctx, k2.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.RevokeAPIKey(ctx, k2.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second RevokeAPIKey: %v", err)
	}
}
