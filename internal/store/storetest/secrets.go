package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/secrets"
)

// RunSecrets is the conformance suite of secrets.Store. open works as in
// Run: the same database again on later calls within one t.
func RunSecrets(t *testing.T, open func(t *testing.T) secrets.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, func(*testing.T) secrets.Store)
	}{
		{"PutReplace", testSecretPutReplace},
		{"TenantIsolation", testSecretTenantIsolation},
		{"Delete", testSecretDelete},
		{"Limit", testSecretLimit},
		{"LimitConcurrent", testSecretLimitConcurrent},
		{"Reopen", testSecretReopen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

func stored(tenant, name string, value string, n int) *secrets.Stored {
	return &secrets.Stored{TenantID: tenant, Name: name, Sealed: []byte(value), CreatedAt: at(n), UpdatedAt: at(n)}
}

func mustPut(t *testing.T, s secrets.Store, sec *secrets.Stored, wantCreated bool) {
	t.Helper()
	created, err := s.PutSecret(t.Context(), sec, 1000)
	if err != nil {
		t.Fatalf("PutSecret(%s/%s): %v", sec.TenantID, sec.Name, err)
	}
	if created != wantCreated {
		t.Fatalf("PutSecret(%s/%s) created = %v, want %v", sec.TenantID, sec.Name, created, wantCreated)
	}
}

func getOne(t *testing.T, s secrets.Store, tenant, name string) *secrets.Stored {
	t.Helper()
	rows, err := s.GetSecrets(t.Context(), tenant, []string{name})
	if err != nil {
		t.Fatalf("GetSecrets(%s, %s): %v", tenant, name, err)
	}
	if len(rows) != 1 {
		t.Fatalf("GetSecrets(%s, %s) = %d rows, want 1", tenant, name, len(rows))
	}
	return rows[0]
}

func testSecretPutReplace(t *testing.T, open func(*testing.T) secrets.Store) {
	s := open(t)
	mustPut(t, s, stored("t1", "HF_TOKEN", "v1", 1), true)
	again := stored("t1", "HF_TOKEN", "v2", 2)
	mustPut(t, s, again, false)
	if !again.CreatedAt.Equal(at(1)) {
		t.Errorf("replacing put reports CreatedAt %v, want the first put's %v", again.CreatedAt, at(1))
	}
	got := getOne(t, s, "t1", "HF_TOKEN")
	if string(got.Sealed) != "v2" || !got.CreatedAt.Equal(at(1)) || !got.UpdatedAt.Equal(at(2)) || got.TenantID != "t1" {
		t.Errorf("after replace: %+v, want sealed v2, created %v, updated %v", got, at(1), at(2))
	}
	// Sealed values are opaque bytes: every byte value round-trips.
	bin := stored("t1", "BIN", "", 3)
	bin.Sealed = []byte{0, 1, 0xff, 0x80, 0}
	mustPut(t, s, bin, true)
	if got := getOne(t, s, "t1", "BIN"); !bytes.Equal(got.Sealed, bin.Sealed) {
		t.Errorf("binary sealed value = %x, want %x", got.Sealed, bin.Sealed)
	}
	mustPut(t, s, stored("t1", "A_FIRST", "x", 4), true)
	list, err := s.ListSecrets(t.Context(), "t1")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range list {
		names = append(names, r.Name)
		if r.Sealed != nil {
			t.Errorf("ListSecrets returned the sealed value of %s; it must not", r.Name)
		}
	}
	if fmt.Sprint(names) != "[A_FIRST BIN HF_TOKEN]" {
		t.Errorf("ListSecrets names = %v, want sorted [A_FIRST BIN HF_TOKEN]", names)
	}
	rows, err := s.GetSecrets(t.Context(), "t1", []string{"HF_TOKEN", "MISSING", "A_FIRST"})
	if err != nil || len(rows) != 2 {
		t.Errorf("GetSecrets with one unknown name = %d rows, %v; want the 2 known", len(rows), err)
	}
	if rows, err := s.GetSecrets(t.Context(), "t1", nil); err != nil || len(rows) != 0 {
		t.Errorf("GetSecrets(no names) = %v, %v; want nothing", rows, err)
	}
}

func testSecretTenantIsolation(t *testing.T, open func(*testing.T) secrets.Store) {
	s := open(t)
	mustPut(t, s, stored("tA", "TOKEN", "a-value", 1), true)
	// The same name in another tenant is another secret.
	mustPut(t, s, stored("tB", "TOKEN", "b-value", 2), true)
	mustPut(t, s, stored("tA", "ONLY_A", "a2", 3), true)
	if got := getOne(t, s, "tB", "TOKEN"); string(got.Sealed) != "b-value" || got.TenantID != "tB" {
		t.Errorf("tenant B's TOKEN = %q of %s, want its own", got.Sealed, got.TenantID)
	}
	if rows, err := s.GetSecrets(t.Context(), "tB", []string{"ONLY_A"}); err != nil || len(rows) != 0 {
		t.Errorf("tenant B resolved tenant A's secret: %v, %v", rows, err)
	}
	if rows, err := s.GetSecrets(t.Context(), "", []string{"ONLY_A"}); err != nil || len(rows) != 0 {
		t.Errorf("the empty tenant resolved tenant A's secret: %v, %v", rows, err)
	}
	list, err := s.ListSecrets(t.Context(), "tB")
	if err != nil || len(list) != 1 || list[0].Name != "TOKEN" {
		t.Errorf("tenant B lists %v, %v; want only its TOKEN", list, err)
	}
	if err := s.DeleteSecret(t.Context(), "tB", "ONLY_A"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("tenant B deleting tenant A's secret: %v, want NotFound", err)
	}
	getOne(t, s, "tA", "ONLY_A")
}

func testSecretDelete(t *testing.T, open func(*testing.T) secrets.Store) {
	s := open(t)
	mustPut(t, s, stored("t1", "GONE", "v", 1), true)
	if err := s.DeleteSecret(t.Context(), "t1", "GONE"); err != nil {
		t.Fatal(err)
	}
	err := s.DeleteSecret(t.Context(), "t1", "GONE")
	if !errors.Is(err, sandbox.ErrNotFound) || sandbox.ReasonOf(err) != sandbox.ReasonSecretNotFound {
		t.Errorf("second delete: %v (reason %q), want NotFound %s", err, sandbox.ReasonOf(err), sandbox.ReasonSecretNotFound)
	}
	if rows, _ := s.GetSecrets(t.Context(), "t1", []string{"GONE"}); len(rows) != 0 {
		t.Errorf("a deleted secret still resolves")
	}
	// A deleted name can be set again, as a new secret.
	mustPut(t, s, stored("t1", "GONE", "v2", 2), true)
}

func testSecretLimit(t *testing.T, open func(*testing.T) secrets.Store) {
	s := open(t)
	const max = 3
	for i := range max {
		if _, err := s.PutSecret(t.Context(), stored("t1", fmt.Sprintf("S%d", i), "v", i), max); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.PutSecret(t.Context(), stored("t1", "ONE_TOO_MANY", "v", 9), max)
	if !errors.Is(err, sandbox.ErrResourceExhausted) || sandbox.ReasonOf(err) != sandbox.ReasonTooManySecrets {
		t.Errorf("put beyond the limit: %v (reason %q), want ResourceExhausted %s", err, sandbox.ReasonOf(err), sandbox.ReasonTooManySecrets)
	}
	// Replacing one at the limit is fine; another tenant has its own count.
	if created, err := s.PutSecret(t.Context(), stored("t1", "S0", "v2", 10), max); err != nil || created {
		t.Errorf("replace at the limit: created %v, %v; want a replace", created, err)
	}
	if _, err := s.PutSecret(t.Context(), stored("t2", "S0", "v", 11), max); err != nil {
		t.Errorf("another tenant's put: %v", err)
	}
	if rows, _ := s.GetSecrets(t.Context(), "t1", []string{"ONE_TOO_MANY"}); len(rows) != 0 {
		t.Errorf("a refused put stored its secret")
	}
}

func testSecretLimitConcurrent(t *testing.T, open func(*testing.T) secrets.Store) {
	s := open(t)
	const max, puts = 5, 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
	)
	for i := range puts {
		wg.Go(func() {
			ok, err := s.PutSecret(t.Context(), stored("t1", fmt.Sprintf("C%d", i), "v", i), max)
			if err != nil && !errors.Is(err, sandbox.ErrResourceExhausted) {
				t.Errorf("put C%d: %v", i, err)
			}
			if ok {
				mu.Lock()
				created++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	list, err := s.ListSecrets(t.Context(), "t1")
	if err != nil {
		t.Fatal(err)
	}
	if created != max || len(list) != max {
		t.Errorf("%d concurrent puts under a limit of %d: %d created, %d stored; want exactly %d", puts, max, created, len(list), max)
	}
}

func testSecretReopen(t *testing.T, open func(*testing.T) secrets.Store) {
	s := open(t)
	mustPut(t, s, stored("t1", "KEPT", "sealed", 1), true)
	if c, ok := s.(interface{ Close() error }); ok {
		c.Close()
	}
	s = open(t)
	if got := getOne(t, s, "t1", "KEPT"); string(got.Sealed) != "sealed" || !got.CreatedAt.Equal(at(1)) {
		t.Errorf("after reopen: %+v", got)
	}
}
