package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sbx-run/sbx/internal/runtime/local"
)

// NetnsReader is the part of the local runtime that the network namespace
// reuse metrics read.
type NetnsReader interface {
	NetnsReuse() local.NetnsReuse
}

var (
	descNetnsAcquired = prometheus.NewDesc("sbx_netns_acquired_total",
		"Network namespaces sandboxes got, by how: reused (kept from an earlier sandbox) or made.", []string{"how"}, nil)
	descNetnsReleased = prometheus.NewDesc("sbx_netns_released_total",
		"Network namespaces of ended sandboxes (but gVisor's), by fate: kept for reuse, or dropped (their sandbox left a socket or sent a packet, or enough were kept).", []string{"fate"}, nil)
)

// WatchNetns registers the counters of the runtime's network namespace
// reuse, read at scrape time.
func (r *Registry) WatchNetns(rt NetnsReader) {
	r.reg.MustRegister(&netnsCollector{rt})
}

type netnsCollector struct{ rt NetnsReader }

func (c *netnsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descNetnsAcquired
	ch <- descNetnsReleased
}

func (c *netnsCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.rt.NetnsReuse()
	ch <- prometheus.MustNewConstMetric(descNetnsAcquired, prometheus.CounterValue, float64(n.Reused), "reused")
	ch <- prometheus.MustNewConstMetric(descNetnsAcquired, prometheus.CounterValue, float64(n.Made), "made")
	ch <- prometheus.MustNewConstMetric(descNetnsReleased, prometheus.CounterValue, float64(n.Kept), "kept")
	ch <- prometheus.MustNewConstMetric(descNetnsReleased, prometheus.CounterValue, float64(n.Dropped), "dropped")
}
