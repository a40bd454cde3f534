package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sbx-run/sbx/internal/lifecycle"
)

// TeardownReader is the part of the lifecycle manager that the teardown
// queue's metrics read.
type TeardownReader interface {
	Teardowns() lifecycle.TeardownStatus
}

var (
	descTeardownsQueued    = prometheus.NewDesc("sbx_teardowns_queued", "Runtime teardowns of deleted or released sandboxes waiting for a worker.", nil, nil)
	descTeardownsRunning   = prometheus.NewDesc("sbx_teardowns_running", "Runtime teardowns in progress.", nil, nil)
	descTeardownsCompleted = prometheus.NewDesc("sbx_teardowns_completed_total", "Runtime teardowns that removed their sandbox (or found it gone).", nil, nil)
	descTeardownsFailed    = prometheus.NewDesc("sbx_teardowns_failed_total", "Runtime teardowns that failed and left something behind for the retention purge or the next start.", nil, nil)
)

// WatchTeardowns registers the teardown queue's gauges and counters, read
// from the manager at scrape time. WatchPools calls it for a manager that
// reports its queue.
func (r *Registry) WatchTeardowns(t TeardownReader) {
	r.reg.MustRegister(&teardownCollector{t})
}

type teardownCollector struct{ t TeardownReader }

func (c *teardownCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTeardownsQueued, descTeardownsRunning, descTeardownsCompleted, descTeardownsFailed} {
		ch <- d
	}
}

func (c *teardownCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.t.Teardowns()
	ch <- prometheus.MustNewConstMetric(descTeardownsQueued, prometheus.GaugeValue, float64(s.Queued))
	ch <- prometheus.MustNewConstMetric(descTeardownsRunning, prometheus.GaugeValue, float64(s.Running))
	ch <- prometheus.MustNewConstMetric(descTeardownsCompleted, prometheus.CounterValue, float64(s.Done-s.Failed))
	ch <- prometheus.MustNewConstMetric(descTeardownsFailed, prometheus.CounterValue, float64(s.Failed))
}

// ObserveTeardown records one queued runtime teardown's duration by result
// (ok or the error reason). It is the lifecycle Config.OnTeardown hook.
func (r *Registry) ObserveTeardown(d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = reasonOf(err)
		r.errors.WithLabelValues("teardown", result).Inc()
	}
	r.teardownDur.WithLabelValues(result).Observe(d.Seconds())
}
