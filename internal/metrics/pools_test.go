package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

type fakePools []lifecycle.PoolStatus

func (f fakePools) Pools() []lifecycle.PoolStatus { return f }

func TestPoolMetrics(t *testing.T) {
	r := New()
	r.WatchPools(fakePools{{Key: "busybox", Config: lifecycle.PoolConfig{MinIdle: 3}, Idle: 2, Warming: 1, Target: 4, Hits: 7, Misses: 2,
		RefillFailures: 1, Backoff: 2 * time.Second}})
	r.ObservePoolRefill("busybox", 120*time.Millisecond, nil)
	r.ObservePoolRefill("busybox", time.Second, sandbox.NotFound(sandbox.ReasonImageNotFound, "no such tag"))
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`sbx_pool_idle{pool="busybox"} 2`,
		`sbx_pool_warming{pool="busybox"} 1`,
		`sbx_pool_min_idle{pool="busybox"} 3`,
		`sbx_pool_target{pool="busybox"} 4`,
		`sbx_pool_hits_total{pool="busybox"} 7`,
		`sbx_pool_misses_total{pool="busybox"} 2`,
		`sbx_pool_refill_failures_total{pool="busybox"} 1`,
		`sbx_pool_backoff_seconds{pool="busybox"} 2`,
		`sbx_pool_refill_duration_seconds_count{pool="busybox",result="ok"} 1`,
		`sbx_pool_refill_duration_seconds_count{pool="busybox",result="IMAGE_NOT_FOUND"} 1`,
		`sbx_errors_total{reason="IMAGE_NOT_FOUND",source="pool"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

type fakeManager struct{ fakePools }

func (fakeManager) Admission() lifecycle.AdmissionStatus {
	return lifecycle.AdmissionStatus{Limit: 4, Queue: 8, Running: 3, Refills: 1, Queued: 5, MeanCreate: 80 * time.Millisecond}
}

// TestAdmissionMetrics: a manager that reports its create gate gets the
// gate's gauges along with its pools'.
func TestAdmissionMetrics(t *testing.T) {
	r := New()
	r.WatchPools(fakeManager{})
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		"sbx_create_limit 4", "sbx_create_queue_limit 8", `sbx_creates_running{kind="user"} 2`,
		`sbx_creates_running{kind="refill"} 1`, "sbx_creates_queued 5", "sbx_create_mean_seconds 0.08",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
