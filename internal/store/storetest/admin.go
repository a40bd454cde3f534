package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// testTenantAdmin covers tenant administration: round trip with the
// creation time, paging by id, quota updates.
func testTenantAdmin(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	// Inserted out of order: pages come sorted by id.
	for _, id := range []string{"tn-c", "tn-a", "tn-e", "tn-b", "tn-d"} {
		if err := s.CreateTenant(ctx(t), &sandbox.Tenant{ID: id, Name: "name-" + id, MaxSandboxes: 3, CreatedAt: at(len(id))}); err != nil {
			t.Fatalf("CreateTenant %s: %v", id, err)
		}
	}
	got, err := s.GetTenant(ctx(t), "tn-a")
	if err != nil {
		t.Fatal(err)
	}
	same(t, "tenant", got, &sandbox.Tenant{ID: "tn-a", Name: "name-tn-a", MaxSandboxes: 3, CreatedAt: at(4)})

	var seen []string
	tok := ""
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatalf("ListTenants did not end after %d pages: %v", pages, seen)
		}
		page, next, err := s.ListTenants(ctx(t), 2, tok)
		if err != nil {
			t.Fatalf("ListTenants page %d: %v", pages, err)
		}
		if len(page) > 2 {
			t.Fatalf("page of %d tenants, want at most 2", len(page))
		}
		for _, tn := range page {
			seen = append(seen, tn.ID)
		}
		if next == "" {
			break
		}
		tok = next
	}
	same(t, "tenant pages", seen, []string{"tn-a", "tn-b", "tn-c", "tn-d", "tn-e"})
	all, next, err := s.ListTenants(ctx(t), 0, "")
	if err != nil || len(all) != 5 || next != "" {
		t.Fatalf("ListTenants(0): %d tenants, next %q, %v", len(all), next, err)
	}
	_, _, err = s.ListTenants(ctx(t), 2, "not-a-token")
	wantErr(t, "bad page token", err, sandbox.ErrInvalidArgument, sandbox.ReasonInvalidPageToken)
	_, _, err = s.ListTenants(ctx(t), 1001, "")
	wantErr(t, "page size", err, sandbox.ErrInvalidArgument, sandbox.ReasonInvalidSpec)

	up, err := s.UpdateTenant(ctx(t), "tn-b", func(tn *sandbox.Tenant) error { tn.MaxSandboxes = 7; return nil })
	if err != nil || up.MaxSandboxes != 7 {
		t.Fatalf("UpdateTenant: %+v %v", up, err)
	}
	if got, _ := s.GetTenant(ctx(t), "tn-b"); got.MaxSandboxes != 7 || got.Name != "name-tn-b" || !got.CreatedAt.Equal(at(4)) {
		t.Fatalf("after UpdateTenant: %+v", got)
	}
	abort := errors.New("abort")
	if _, err := s.UpdateTenant(ctx(t), "tn-b", func(tn *sandbox.Tenant) error { tn.MaxSandboxes = 9; return abort }); !errors.Is(err, abort) {
		t.Fatalf("aborted UpdateTenant: %v", err)
	}
	if got, _ := s.GetTenant(ctx(t), "tn-b"); got.MaxSandboxes != 7 {
		t.Fatalf("aborted UpdateTenant wrote %d", got.MaxSandboxes)
	}
	_, err = s.UpdateTenant(ctx(t), "tn-b", func(tn *sandbox.Tenant) error { tn.ID = "tn-z"; return nil })
	wantErr(t, "UpdateTenant changing the id", err, sandbox.ErrInternal, sandbox.ReasonInternal)
	_, err = s.UpdateTenant(ctx(t), "nope", func(*sandbox.Tenant) error { return nil })
	wantErr(t, "UpdateTenant missing", err, sandbox.ErrNotFound, sandbox.ReasonTenantNotFound)
}

// testAPIKeyAdmin covers key administration: labels, listing per tenant,
// lookup by id, deletion, and the per-tenant bound under concurrency.
func testAPIKeyAdmin(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	k1 := &sandbox.APIKey{ID: "key-1", TenantID: "t1", Hash: "h1", Label: "ci runner", CreatedAt: at(2)}
	k2 := &sandbox.APIKey{ID: "key-2", TenantID: "t1", Hash: "h2", CreatedAt: at(1)}
	k3 := &sandbox.APIKey{ID: "key-3", TenantID: "t2", Hash: "h3", Label: "other", CreatedAt: at(0)}
	for _, k := range []*sandbox.APIKey{k1, k2, k3} {
		if err := s.CreateAPIKey(ctx(t), k); err != nil {
			t.Fatalf("CreateAPIKey %s: %v", k.ID, err)
		}
	}
	keys, err := s.ListAPIKeys(ctx(t), "t1")
	if err != nil {
		t.Fatal(err)
	}
	same(t, "t1's keys, oldest first", keys, []*sandbox.APIKey{k2, k1})
	if keys, err := s.ListAPIKeys(ctx(t), "t3"); err != nil || len(keys) != 0 {
		t.Fatalf("keys of a tenant with none: %v %v", keys, err)
	}
	got, err := s.GetAPIKey(ctx(t), "key-1")
	if err != nil {
		t.Fatal(err)
	}
	same(t, "GetAPIKey", got, k1)
	got, err = s.LookupAPIKey(ctx(t), "h1")
	if err != nil {
		t.Fatal(err)
	}
	same(t, "LookupAPIKey with label", got, k1)

	del, err := s.DeleteAPIKey(ctx(t), "key-1")
	if err != nil {
		t.Fatal(err)
	}
	same(t, "deleted key", del, k1)
	_, err = s.LookupAPIKey(ctx(t), "h1")
	wantErr(t, "lookup of a deleted key", err, sandbox.ErrNotFound, sandbox.ReasonAPIKeyNotFound)
	_, err = s.GetAPIKey(ctx(t), "key-1")
	wantErr(t, "get of a deleted key", err, sandbox.ErrNotFound, sandbox.ReasonAPIKeyNotFound)
	_, err = s.DeleteAPIKey(ctx(t), "key-1")
	wantErr(t, "second delete", err, sandbox.ErrNotFound, sandbox.ReasonAPIKeyNotFound)
	if keys, _ := s.ListAPIKeys(ctx(t), "t2"); len(keys) != 1 {
		t.Fatalf("t2's keys after deleting t1's: %v", keys)
	}

	// Fill t1 to ten short of the bound, then race twenty creates: exactly
	// ten may pass.
	for i := 1; i < store.MaxAPIKeysPerTenant-10; i++ {
		k := &sandbox.APIKey{ID: fmt.Sprintf("fill-%d", i), TenantID: "t1", Hash: fmt.Sprintf("fill-%d", i), CreatedAt: at(10 + i)}
		if err := s.CreateAPIKey(ctx(t), k); err != nil {
			t.Fatalf("CreateAPIKey %s: %v", k.ID, err)
		}
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ok, mxd int
	)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.CreateAPIKey(ctx(t), &sandbox.APIKey{ID: fmt.Sprintf("race-%d", i), TenantID: "t1", Hash: fmt.Sprintf("race-%d", i), CreatedAt: at(200 + i)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, sandbox.ErrResourceExhausted) && sandbox.ReasonOf(err) == sandbox.ReasonTooManyAPIKeys:
				mxd++
			default:
				t.Errorf("racing CreateAPIKey: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 10 || mxd != 10 {
		t.Fatalf("racing creates: %d passed, %d refused; want 10 and 10", ok, mxd)
	}
	if keys, _ := s.ListAPIKeys(ctx(t), "t1"); len(keys) != store.MaxAPIKeysPerTenant {
		t.Fatalf("t1 has %d keys, want %d", len(keys), store.MaxAPIKeysPerTenant)
	}
	// Another tenant is not affected by t1's bound.
	if err := s.CreateAPIKey(ctx(t), &sandbox.APIKey{ID: "key-4", TenantID: "t2", Hash: "h4", CreatedAt: at(3)}); err != nil {
		t.Fatal(err)
	}
}
