package lifecycle

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/lifecycle/lifecycletest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store/sqlite"
)

// sweepManager is a started manager on a real SQLite store whose runtime
// holds live RUNNING sandboxes with an hour to live, made by an earlier
// server process (so Start recovers them), in sessions open sessions.
func sweepManager(b *testing.B, live, sessions int) *Manager {
	b.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "sbx.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	rt := lifecycletest.NewRuntime()
	now := time.Now()
	var sids []string
	for i := range sessions {
		s := &sandbox.Session{ID: fmt.Sprintf("ss-bench%d", i), TenantID: tenant, Lease: time.Hour, CreatedAt: now, LastHeartbeat: now}
		if err := st.CreateSession(ctx, s); err != nil {
			b.Fatal(err)
		}
		sids = append(sids, s.ID)
	}
	for i := range live {
		id := fmt.Sprintf("sb-bench%05d", i)
		sb := &sandbox.Sandbox{ID: id, TenantID: tenant, State: sandbox.StateRunning, Reason: sandbox.ReasonStarted,
			Spec:  sandbox.Spec{ID: id, Image: "busybox:rate"},
			Start: sandbox.StartSpec{Env: map[string]string{"RUN": "bench", "I": fmt.Sprint(i)}, WorkingDir: "/"},
			Tags:  []string{"bench"}, MaxLifetime: time.Hour, CreatedAt: now, StartedAt: now, ExpiresAt: now.Add(time.Hour),
			Transitions: []sandbox.Transition{{State: sandbox.StateCreating, Reason: reasonClaimed, At: now},
				{State: sandbox.StateRunning, Reason: sandbox.ReasonStarted, At: now}}}
		if len(sids) > 0 {
			sb.SessionID = sids[i%len(sids)]
		}
		if err := st.CreateSandbox(ctx, sb); err != nil {
			b.Fatal(err)
		}
		rt.Adopt(id)
	}
	m, err := New(rt, st, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		SweepInterval: time.Hour, PurgeInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	return m
}

// benchSweep runs one sweep per iteration and reports its CPU time.
func benchSweep(b *testing.B, live, sessions int, full bool) {
	m := sweepManager(b, live, sessions)
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		m.sweep(m.base, full)
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/sweep")
}

// BenchmarkSweep measures the once-a-second sweep with 1000 live
// sandboxes and nothing due: its cost should not grow with them.
func BenchmarkSweep(b *testing.B) {
	for _, c := range []struct{ live, sessions int }{{1000, 0}, {1000, 10}, {100, 0}} {
		b.Run(fmt.Sprintf("live=%d/sessions=%d", c.live, c.sessions), func(b *testing.B) {
			benchSweep(b, c.live, c.sessions, false)
		})
	}
}

// BenchmarkSweepFull measures the safety sweep (once a minute), which
// re-reads every live record.
func BenchmarkSweepFull(b *testing.B) {
	benchSweep(b, 1000, 0, true)
}
