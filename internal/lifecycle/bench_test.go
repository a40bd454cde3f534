package lifecycle

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/lifecycle/lifecycletest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
	"github.com/sbx-run/sbx/internal/store/sqlite"
)

// countingStore counts the store calls that write (each is one SQLite
// transaction, one WAL append) and those that only read.
type countingStore struct {
	store.Store
	writes, reads atomic.Int64
}

func (c *countingStore) CreateSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	c.writes.Add(1)
	return c.Store.CreateSandbox(ctx, sb)
}

func (c *countingStore) UpdateSandbox(ctx context.Context, id string, fn func(*sandbox.Sandbox) error) (*sandbox.Sandbox, error) {
	c.writes.Add(1)
	return c.Store.UpdateSandbox(ctx, id, fn)
}

func (c *countingStore) DeleteSandbox(ctx context.Context, id string) error {
	c.writes.Add(1)
	return c.Store.DeleteSandbox(ctx, id)
}

func (c *countingStore) ClaimPoolSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	c.writes.Add(1)
	return c.Store.ClaimPoolSandbox(ctx, sb)
}

func (c *countingStore) CreatePoolSandbox(ctx context.Context, p *store.PoolSandbox) error {
	c.writes.Add(1)
	return c.Store.CreatePoolSandbox(ctx, p)
}

func (c *countingStore) GetSandbox(ctx context.Context, tenantID, id string) (*sandbox.Sandbox, error) {
	c.reads.Add(1)
	return c.Store.GetSandbox(ctx, tenantID, id)
}

func (c *countingStore) GetTenant(ctx context.Context, id string) (*sandbox.Tenant, error) {
	c.reads.Add(1)
	return c.Store.GetTenant(ctx, id)
}

func (c *countingStore) CountActive(ctx context.Context, tenantID string) (int, error) {
	c.reads.Add(1)
	return c.Store.CountActive(ctx, tenantID)
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchManager is a manager on a real SQLite store and the fake runtime,
// with a pool of size for poolImage; the runtime costs nothing, so what is
// measured is the manager and the store.
func benchManager(b *testing.B, size int) (*Manager, *countingStore) {
	b.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "sbx.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	cs := &countingStore{Store: st}
	cfg := Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxSandboxesPerTenant: 100_000,
		Pools: []PoolConfig{{Image: poolImage, MinIdle: size}}}
	m, err := New(lifecycletest.NewRuntime(), cs, cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	return m, cs
}

// waitPool waits until the pool holds n idle sandboxes.
func waitPool(b *testing.B, m *Manager, n int) {
	b.Helper()
	for deadline := time.Now().Add(time.Minute); m.Pools()[0].Idle < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("pool did not fill: %+v", m.Pools()[0])
		}
	}
}

// BenchmarkClaim measures a Create served by a warm pool (claim, Start,
// RUNNING) and reports the store writes and reads per claim.
func BenchmarkClaim(b *testing.B) {
	const size = 200
	m, cs := benchManager(b, size)
	ctx := context.Background()
	waitPool(b, m, size)
	var ids []string
	b.ResetTimer()
	w0, r0, cpu0 := cs.writes.Load(), cs.reads.Load(), cpuTime()
	var refillW int64
	for i := 0; i < b.N; i++ {
		if m.Pools()[0].Idle == 0 {
			b.StopTimer()
			wa := cs.writes.Load()
			waitPool(b, m, size)
			refillW += cs.writes.Load() - wa
			b.StartTimer()
		}
		sb, err := m.Create(ctx, tenant, CreateRequest{Image: poolImage, Env: map[string]string{"A": "b"}})
		if err != nil {
			b.Fatal(err)
		}
		if sb.State != sandbox.StateRunning {
			b.Fatalf("state %s, want RUNNING", sb.State)
		}
		ids = append(ids, sb.ID)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e3, "cpu-µs/op")
	b.ReportMetric(float64(cs.writes.Load()-w0-refillW)/float64(b.N), "writes/op")
	b.ReportMetric(float64(cs.reads.Load()-r0)/float64(b.N), "reads/op")
}

// BenchmarkDelete measures Delete of a RUNNING idle sandbox, as the caller
// sees it, and reports the store writes and reads per delete.
func BenchmarkDelete(b *testing.B) {
	m, cs := benchManager(b, 0)
	ctx := context.Background()
	ids := make([]string, b.N)
	for i := range ids {
		sb, err := m.Create(ctx, tenant, CreateRequest{Image: "busybox"})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = sb.ID
		if _, ok, err := m.Wait(ctx, tenant, sb.ID, UntilRunning, time.Minute); err != nil || !ok {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	w0, r0, cpu0 := cs.writes.Load(), cs.reads.Load(), cpuTime()
	for _, id := range ids {
		if err := m.Delete(ctx, tenant, id); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e3, "cpu-µs/op")
	b.ReportMetric(float64(cs.writes.Load()-w0)/float64(b.N), "writes/op")
	b.ReportMetric(float64(cs.reads.Load()-r0)/float64(b.N), "reads/op")
}

// BenchmarkClaimDeleteParallel runs many callers that each claim a warm
// sandbox and delete it, as a pool-backed load does; it reports the worst
// Create latency, to show stalls (lock convoys, a busy store writer).
func BenchmarkClaimDeleteParallel(b *testing.B) {
	const size = 500
	m, cs := benchManager(b, size)
	ctx := context.Background()
	waitPool(b, m, size)
	var worst, refused atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	w0, cpu0 := cs.writes.Load(), cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t0 := time.Now()
			sb, err := m.Create(ctx, tenant, CreateRequest{Image: poolImage})
			if errors.Is(err, sandbox.ErrResourceExhausted) {
				refused.Add(1) // the pool ran dry and the create queue is full
				time.Sleep(sandbox.RetryAfterOf(err))
				continue
			}
			if err != nil {
				b.Error(err)
				return
			}
			if d := int64(time.Since(t0)); d > worst.Load() {
				worst.Store(d)
			}
			if err := m.Delete(ctx, tenant, sb.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e3, "cpu-µs/op")
	b.ReportMetric(float64(cs.writes.Load()-w0)/float64(b.N), "writes/op")
	b.ReportMetric(float64(worst.Load())/1e6, "worst-create-ms")
	b.ReportMetric(float64(m.Pools()[0].Misses), "misses")
	b.ReportMetric(float64(refused.Load()), "refused")
}
