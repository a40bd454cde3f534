package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sbx-run/sbx/internal/lifecycle"
)

// AdmissionReader is the part of the lifecycle manager that the create
// gate's gauges read.
type AdmissionReader interface {
	Admission() lifecycle.AdmissionStatus
}

var (
	descCreateLimit   = prometheus.NewDesc("sbx_create_limit", "Runtime creates the server runs at once (admission control).", nil, nil)
	descCreateQueue   = prometheus.NewDesc("sbx_create_queue_limit", "Accepted creates that may wait for a create slot; beyond it Create answers CREATE_QUEUE_FULL.", nil, nil)
	descCreateRunning = prometheus.NewDesc("sbx_creates_running", "Runtime creates in progress, by kind (user, or refill of a warm pool).", []string{"kind"}, nil)
	descCreateQueued  = prometheus.NewDesc("sbx_creates_queued", "Accepted creates waiting for a create slot.", nil, nil)
	descCreateMean    = prometheus.NewDesc("sbx_create_mean_seconds", "Moving average of a runtime create's duration, from which retry delays are estimated.", nil, nil)
)

// WatchAdmission registers the create gate's gauges, read at scrape time.
func (r *Registry) WatchAdmission(a AdmissionReader) {
	r.reg.MustRegister(&admissionCollector{a})
}

type admissionCollector struct{ a AdmissionReader }

func (c *admissionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCreateLimit, descCreateQueue, descCreateRunning, descCreateQueued, descCreateMean} {
		ch <- d
	}
}

func (c *admissionCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.a.Admission()
	ch <- prometheus.MustNewConstMetric(descCreateLimit, prometheus.GaugeValue, float64(s.Limit))
	ch <- prometheus.MustNewConstMetric(descCreateQueue, prometheus.GaugeValue, float64(s.Queue))
	ch <- prometheus.MustNewConstMetric(descCreateRunning, prometheus.GaugeValue, float64(s.Running-s.Refills), "user")
	ch <- prometheus.MustNewConstMetric(descCreateRunning, prometheus.GaugeValue, float64(s.Refills), "refill")
	ch <- prometheus.MustNewConstMetric(descCreateQueued, prometheus.GaugeValue, float64(s.Queued))
	ch <- prometheus.MustNewConstMetric(descCreateMean, prometheus.GaugeValue, s.MeanCreate.Seconds())
}
