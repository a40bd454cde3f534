package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sbx-run/sbx/internal/lifecycle"
)

// PoolLister is the part of the lifecycle manager that WatchPools reads.
type PoolLister interface {
	Pools() []lifecycle.PoolStatus
}

var (
	descPoolIdle     = prometheus.NewDesc("sbx_pool_idle", "Idle sandboxes of a warm pool, ready to be claimed.", []string{"pool"}, nil)
	descPoolWarming  = prometheus.NewDesc("sbx_pool_warming", "Sandboxes of a warm pool being created.", []string{"pool"}, nil)
	descPoolMinIdle  = prometheus.NewDesc("sbx_pool_min_idle", "Configured min idle of a warm pool.", []string{"pool"}, nil)
	descPoolTarget   = prometheus.NewDesc("sbx_pool_target", "Sandboxes a warm pool refills to: min idle plus recent misses, at most its max.", []string{"pool"}, nil)
	descPoolHits     = prometheus.NewDesc("sbx_pool_hits_total", "Creates served from a warm pool.", []string{"pool"}, nil)
	descPoolMisses   = prometheus.NewDesc("sbx_pool_misses_total", "Creates that matched a warm pool but found it empty (started cold).", []string{"pool"}, nil)
	descPoolFailures = prometheus.NewDesc("sbx_pool_refill_failures_total", "Failed refills of a warm pool.", []string{"pool"}, nil)
	descPoolBackoff  = prometheus.NewDesc("sbx_pool_backoff_seconds", "Current refill back-off of a warm pool (0 when healthy).", []string{"pool"}, nil)
)

// WatchPools registers the warm pools' gauges and counters, read from the
// manager at scrape time. Pool labels are the configured pools' keys, so
// their number is bounded by the configuration.
// The lifecycle manager also reports its create gate (admission control)
// and its teardown queue: those metrics are registered here too, so every
// server that watches its pools exports them.
func (r *Registry) WatchPools(pools PoolLister) {
	r.reg.MustRegister(&poolCollector{pools})
	if a, ok := pools.(AdmissionReader); ok {
		r.WatchAdmission(a)
	}
	if t, ok := pools.(TeardownReader); ok {
		r.WatchTeardowns(t)
	}
}

type poolCollector struct{ pools PoolLister }

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPoolIdle, descPoolWarming, descPoolMinIdle, descPoolTarget, descPoolHits, descPoolMisses, descPoolFailures, descPoolBackoff} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.pools.Pools() {
		ch <- prometheus.MustNewConstMetric(descPoolIdle, prometheus.GaugeValue, float64(p.Idle), p.Key)
		ch <- prometheus.MustNewConstMetric(descPoolWarming, prometheus.GaugeValue, float64(p.Warming), p.Key)
		ch <- prometheus.MustNewConstMetric(descPoolMinIdle, prometheus.GaugeValue, float64(p.Config.MinIdle), p.Key)
		ch <- prometheus.MustNewConstMetric(descPoolTarget, prometheus.GaugeValue, float64(p.Target), p.Key)
		ch <- prometheus.MustNewConstMetric(descPoolHits, prometheus.CounterValue, float64(p.Hits), p.Key)
		ch <- prometheus.MustNewConstMetric(descPoolMisses, prometheus.CounterValue, float64(p.Misses), p.Key)
		ch <- prometheus.MustNewConstMetric(descPoolFailures, prometheus.CounterValue, float64(p.RefillFailures), p.Key)
		ch <- prometheus.MustNewConstMetric(descPoolBackoff, prometheus.GaugeValue, p.Backoff.Seconds(), p.Key)
	}
}

// ObservePoolRefill records one refill of a warm pool: its create latency
// by pool and result. It is the lifecycle Config.OnPoolRefill hook.
func (r *Registry) ObservePoolRefill(pool string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = reasonOf(err)
		r.errors.WithLabelValues("pool", result).Inc()
	}
	r.poolRefill.WithLabelValues(pool, result).Observe(d.Seconds())
}
