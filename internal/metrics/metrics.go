// Package metrics is sbx's Prometheus instrumentation: request, exec and
// error counters from a Connect interceptor, create counts and latencies
// from a wrapper around the sandbox.Runtime, sandboxes by state read from
// the store at scrape time, image pulls by result from the image store's
// OnPull hook, warm pool sizes, hits, misses and refill latencies from the
// lifecycle manager, its create gate and teardown queue, and per-tenant CPU
// and memory usage read from the sandboxes' cgroups.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds sbx's metrics. Its methods are safe for concurrent use.
type Registry struct {
	reg *prometheus.Registry

	requests    *prometheus.CounterVec
	reqDuration *prometheus.HistogramVec
	errors      *prometheus.CounterVec
	execs       *prometheus.CounterVec
	creates     *prometheus.CounterVec
	createDur   *prometheus.HistogramVec
	startDur    prometheus.Histogram
	stops       prometheus.Counter
	pulls       *prometheus.CounterVec
	pullDur     *prometheus.HistogramVec
	poolRefill  *prometheus.HistogramVec
	teardownDur *prometheus.HistogramVec
}

// New returns a Registry with sbx's metrics and the Go and process
// collectors registered.
func New() *Registry {
	r := &Registry{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sbx_api_requests_total",
			Help: "API calls by procedure and Connect code.",
		}, []string{"procedure", "code"}),
		reqDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sbx_api_request_duration_seconds",
			Help:    "Duration of unary API calls by procedure.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"procedure"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sbx_errors_total",
			Help: "Errors returned to callers or met by the runtime, by machine-readable reason.",
		}, []string{"source", "reason"}),
		execs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sbx_execs_total",
			Help: "Exec calls by result (ok or the error reason).",
		}, []string{"result"}),
		creates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sbx_sandbox_creates_total",
			Help: "Sandbox containers created by the runtime, by result (ok or the error reason).",
		}, []string{"result"}),
		createDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sbx_sandbox_create_duration_seconds",
			Help:    "Runtime create latency (image from cache or pulled, container up, agent answering), by result.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
		}, []string{"result"}),
		startDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sbx_sandbox_start_duration_seconds",
			Help:    "Latency of applying env, files and the main command through the agent.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		stops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sbx_sandbox_stops_total",
			Help: "Sandbox stops sent to the runtime.",
		}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sbx_image_pulls_total",
			Help: "Image pulls from registries (cache hits are not pulls), by result (ok or the error reason).",
		}, []string{"result"}),
		pullDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sbx_image_pull_duration_seconds",
			Help:    "Image pull latency (resolve, download, unpack), by result.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}, []string{"result"}),
		poolRefill: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sbx_pool_refill_duration_seconds",
			Help:    "Time to create one warm pool sandbox (container up, agent answering), by pool and result.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
		}, []string{"pool", "result"}),
		teardownDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sbx_teardown_duration_seconds",
			Help:    "Duration of one queued runtime teardown (container, mounts, cgroups, network and directories removed), by result.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
		}, []string{"result"}),
	}
	r.reg.MustRegister(r.poolRefill, r.teardownDur, r.requests, r.reqDuration, r.errors, r.execs, r.creates, r.createDur, r.startDur, r.stops, r.pulls, r.pullDur,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Handler serves the metrics in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// Register adds a collector (for tests and other packages' metrics).
func (r *Registry) Register(c prometheus.Collector) error { return r.reg.Register(c) }
