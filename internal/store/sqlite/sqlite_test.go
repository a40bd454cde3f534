package sqlite_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
	"github.com/sbx-run/sbx/internal/store/sqlite"
	"github.com/sbx-run/sbx/internal/store/storetest"
)

// dbFiles gives each test its own file, the same one on every open within it.
var dbFiles sync.Map // *testing.T -> path

func open(t *testing.T) store.Store {
	path, ok := dbFiles.Load(t)
	if !ok {
		path = filepath.Join(t.TempDir(), "sbx.db")
		dbFiles.Store(t, path)
		t.Cleanup(func() { dbFiles.Delete(t) })
	}
	s, err := sqlite.Open(t.Context(), path.(string))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) { storetest.Run(t, open) }

func TestFileIsPrivateAndWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sbx.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateTenant(t.Context(), &sandbox.Tenant{ID: "t1"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database file mode %v, want 0600 (records hold sandbox environments)", fi.Mode().Perm())
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Errorf("no WAL file next to the database: %v", err)
	}
}

func TestOpenRejectsBadPaths(t *testing.T) {
	for _, p := range []string{"", "/tmp/a?mode=memory", filepath.Join(t.TempDir(), "missing-dir", "sbx.db")} {
		if s, err := sqlite.Open(t.Context(), p); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func TestMigrationsAreIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sbx.db")
	for range 3 {
		s, err := sqlite.Open(t.Context(), path)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		s.Close()
	}
}

// Two Stores on one file (as during a restart overlap) contend for SQLite's
// write lock: BEGIN IMMEDIATE and the busy timeout make them wait for each
// other instead of failing with SQLITE_BUSY, and no update is lost.
func TestTwoStoresOnOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sbx.db")
	var stores []*sqlite.Store
	for range 2 {
		s, err := sqlite.Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores = append(stores, s)
	}
	if err := stores[0].CreateSandbox(t.Context(), benchSandbox(0)); err != nil {
		t.Fatal(err)
	}
	const perStore = 10
	var wg sync.WaitGroup
	errs := make(chan error, 4*perStore)
	for si, s := range stores {
		for i := range perStore {
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, err := s.UpdateSandbox(t.Context(), "sb-00000000", func(sb *sandbox.Sandbox) error {
					sb.Transitions = append(sb.Transitions, sandbox.Transition{State: sandbox.StateRunning, Reason: fmt.Sprint(si, i)})
					return nil
				})
				errs <- err
			}()
			go func() {
				defer wg.Done()
				errs <- s.CreateSandbox(t.Context(), benchSandbox(1+si*perStore+i))
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("write through the second store: %v", err)
		}
	}
	sb, err := stores[1].GetSandbox(t.Context(), "t1", "sb-00000000")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(sb.Transitions), 1+2*perStore; got != want {
		t.Fatalf("%d transitions, want %d: updates were lost", got, want)
	}
	if n, err := stores[0].CountActive(t.Context(), "t1"); err != nil || n != 1+2*perStore {
		t.Fatalf("CountActive = %d, %v; want %d", n, err, 1+2*perStore)
	}
}

func benchStore(b *testing.B) *sqlite.Store {
	s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "sbx.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func benchSandbox(i int) *sandbox.Sandbox {
	id := fmt.Sprintf("sb-%08d", i)
	now := time.Now().UTC()
	return &sandbox.Sandbox{
		ID: id, TenantID: "t1", RequestID: "req-" + id,
		Spec:        sandbox.Spec{ID: id, Image: "python:3.11"},
		Start:       sandbox.StartSpec{Command: []string{"python3", "-c", "print(1)"}, Env: map[string]string{"A": "1"}},
		Tags:        []string{"bench", "run:1"},
		State:       sandbox.StatePending,
		CreatedAt:   now,
		ExpiresAt:   now.Add(10 * time.Minute),
		Transitions: []sandbox.Transition{{State: sandbox.StatePending, Reason: sandbox.ReasonRequested, At: now}},
	}
}

func BenchmarkCreateSandbox(b *testing.B) {
	s := benchStore(b)
	i := 0
	for b.Loop() {
		if err := s.CreateSandbox(b.Context(), benchSandbox(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkCreateSandboxParallel(b *testing.B) {
	s := benchStore(b)
	var mu sync.Mutex
	next := 0
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			i := next
			next++
			mu.Unlock()
			if err := s.CreateSandbox(b.Context(), benchSandbox(i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkGetSandbox(b *testing.B) {
	s := benchStore(b)
	const n = 1000
	for i := range n {
		if err := s.CreateSandbox(b.Context(), benchSandbox(i)); err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	for b.Loop() {
		if _, err := s.GetSandbox(b.Context(), "t1", fmt.Sprintf("sb-%08d", i%n)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkUpdateSandbox(b *testing.B) {
	s := benchStore(b)
	if err := s.CreateSandbox(b.Context(), benchSandbox(0)); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.UpdateSandbox(b.Context(), "sb-00000000", func(sb *sandbox.Sandbox) error {
			sb.Reason = "bench"
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkListSandboxesByTag(b *testing.B) {
	s := benchStore(b)
	for i := range 1000 {
		sb := benchSandbox(i)
		if i%10 == 0 {
			sb.Tags = append(sb.Tags, "rare")
		}
		if err := s.CreateSandbox(b.Context(), sb); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		page, _, err := s.ListSandboxes(b.Context(), store.SandboxFilter{TenantID: "t1", Tags: []string{"rare"}, PageSize: 50})
		if err != nil || len(page) != 50 {
			b.Fatalf("%d records, %v", len(page), err)
		}
	}
}
