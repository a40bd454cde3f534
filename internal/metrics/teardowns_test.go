package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/lifecycle/lifecycletest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store/sqlite"
)

func scrape(t *testing.T, r *Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

func wantMetrics(t *testing.T, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("metrics lack %s", w)
		}
	}
}

// waitMetrics polls /metrics until it shows every wanted line (teardowns
// run in the background).
func waitMetrics(t *testing.T, r *Registry, want ...string) {
	t.Helper()
	for range 2000 {
		body := scrape(t, r)
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(body, w)
		}
		if ok {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	wantMetrics(t, scrape(t, r), want...)
}

// TestTeardownMetrics deletes sandboxes of a real manager (on SQLite and
// the fake runtime) and watches the teardown queue's metrics follow:
// queued and running while a teardown is held, then completed, failed and
// the duration histogram.
func TestTeardownMetrics(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rt := lifecycletest.NewRuntime()
	r := New()
	m, err := lifecycle.New(rt, st, lifecycle.Config{TeardownParallel: 1, OnTeardown: r.ObserveTeardown,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	r.WatchPools(m)

	var ids []string
	for range 4 {
		sb, err := m.Create(ctx, "t-1", lifecycle.CreateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := m.Wait(ctx, "t-1", sb.ID, lifecycle.UntilRunning, time.Minute); !ok || err != nil {
			t.Fatalf("Wait: %v %v", ok, err)
		}
		ids = append(ids, sb.ID)
	}
	wantMetrics(t, scrape(t, r), "sbx_teardowns_queued 0", "sbx_teardowns_running 0",
		"sbx_teardowns_completed_total 0", "sbx_teardowns_failed_total 0")

	// Hold the first teardown; the last one fails.
	hold := make(chan struct{})
	rt.DeleteHook = func(ctx context.Context, id string) error {
		switch id {
		case ids[0]:
			<-hold
		case ids[3]:
			return sandbox.Unavailable(sandbox.ReasonRuntimeError, "runtime: cannot remove %s", id)
		}
		return nil
	}
	for _, id := range ids {
		if err := m.Delete(ctx, "t-1", id); err != nil {
			t.Fatal(err)
		}
	}
	waitMetrics(t, r, "sbx_teardowns_queued 3", "sbx_teardowns_running 1")
	close(hold)
	waitMetrics(t, r, "sbx_teardowns_queued 0", "sbx_teardowns_running 0",
		"sbx_teardowns_completed_total 3", "sbx_teardowns_failed_total 1",
		`sbx_teardown_duration_seconds_count{result="ok"} 3`,
		`sbx_teardown_duration_seconds_count{result="RUNTIME_ERROR"} 1`,
		`sbx_errors_total{reason="RUNTIME_ERROR",source="teardown"} 1`)
}
