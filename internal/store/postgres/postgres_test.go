package postgres_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
	"github.com/sbx-run/sbx/internal/store/postgres"
	"github.com/sbx-run/sbx/internal/store/storetest"
	"github.com/sbx-run/sbx/internal/testenv"
)

// dsns gives each test its own database, the same one on every open within it.
var dsns sync.Map // *testing.T -> dsn

func open(t *testing.T) store.Store {
	dsn, ok := dsns.Load(t)
	if !ok {
		dsn = testenv.Postgres(t)
		dsns.Store(t, dsn)
		t.Cleanup(func() { dsns.Delete(t) })
	}
	s, err := postgres.Open(t.Context(), dsn.(string))
	if err != nil {
		t.Fatalf("postgres.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) { storetest.Run(t, open) }

func TestMigrationsAreIdempotent(t *testing.T) {
	dsn := testenv.Postgres(t)
	for range 3 {
		s, err := postgres.Open(t.Context(), dsn)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		s.Close()
	}
}

// Replicas starting at once must not race on the schema.
func TestConcurrentOpen(t *testing.T) {
	dsn := testenv.Postgres(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := postgres.Open(t.Context(), dsn)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
}

func TestOpenBadDSN(t *testing.T) {
	if _, err := postgres.Open(t.Context(), "postgres://u:secret@127.0.0.1:1/x?connect_timeout=2"); err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	if _, err := postgres.Open(t.Context(), "::not a dsn::"); err == nil {
		t.Fatal("Open of a malformed DSN succeeded")
	}
}

func benchSandbox(i int) *sandbox.Sandbox {
	id := fmt.Sprintf("sb-%08d", i)
	now := time.Now().UTC()
	return &sandbox.Sandbox{
		ID: id, TenantID: "t1", Spec: sandbox.Spec{ID: id, Image: "python:3.11"},
		Start: sandbox.StartSpec{Command: []string{"true"}}, Tags: []string{"bench"},
		State: sandbox.StatePending, CreatedAt: now,
		Transitions: []sandbox.Transition{{State: sandbox.StatePending, Reason: sandbox.ReasonRequested, At: now}},
	}
}

func BenchmarkCreateSandbox(b *testing.B) {
	s, err := postgres.Open(b.Context(), testenv.Postgres(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	i := 0
	for b.Loop() {
		if err := s.CreateSandbox(b.Context(), benchSandbox(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkGetSandbox(b *testing.B) {
	s, err := postgres.Open(b.Context(), testenv.Postgres(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateSandbox(b.Context(), benchSandbox(0)); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.GetSandbox(b.Context(), "t1", "sb-00000000"); err != nil {
			b.Fatal(err)
		}
	}
}
