package metrics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// maxScan bounds how many records one scrape reads, so /metrics stays cheap
// on a server with many retained sandboxes.
const maxScan = 100_000

// WatchStore registers sandboxes-by-state (and active sandboxes per tenant)
// gauges computed from the store at scrape time.
func (r *Registry) WatchStore(st store.Store) {
	r.reg.MustRegister(&stateCollector{st: st})
}

var (
	descByState = prometheus.NewDesc("sbx_sandboxes", "Sandboxes known to the store (terminal ones until retention ends), by state.", []string{"state"}, nil)
	descActive  = prometheus.NewDesc("sbx_tenant_active_sandboxes", "Non-terminal sandboxes per tenant (what the quota counts).", []string{"tenant"}, nil)
)

type stateCollector struct{ st store.Store }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descByState
	ch <- descActive
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	byState := map[sandbox.State]int{}
	active := map[string]int{}
	err := scan(ctx, c.st, true, func(sb *sandbox.Sandbox) {
		byState[sb.State]++
		if !sb.State.Terminal() {
			active[sb.TenantID]++
		}
	})
	if err != nil {
		slog.Warn("metrics: list sandboxes", "err", err)
		return
	}
	for _, s := range sandbox.States {
		ch <- prometheus.MustNewConstMetric(descByState, prometheus.GaugeValue, float64(byState[s]), string(s))
	}
	for t, n := range active {
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(n), t)
	}
}

// scan calls fn for every sandbox of every tenant (non-terminal ones only
// unless terminal), up to maxScan.
func scan(ctx context.Context, st store.Store, terminal bool, fn func(*sandbox.Sandbox)) error {
	f := store.SandboxFilter{IncludeTerminal: terminal, PageSize: 1000}
	n := 0
	for {
		page, next, err := st.ListSandboxes(ctx, f)
		if err != nil {
			return err
		}
		for _, sb := range page {
			fn(sb)
		}
		n += len(page)
		if next == "" || n >= maxScan {
			return nil
		}
		f.PageToken = next
	}
}

// usageCollector reports per-tenant CPU seconds and memory from cgroups.
type usageCollector struct {
	st     store.Store
	cg     *cgroupReader
	mu     sync.Mutex
	cpu    map[string]float64 // tenant → seconds of ended and live sandboxes
	last   map[string]float64 // sandbox id → last CPU seconds seen
	tenant map[string]string  // sandbox id → tenant, for sandboxes seen live
}

var (
	descCPU = prometheus.NewDesc("sbx_tenant_cpu_seconds_total", "CPU time used by a tenant's sandboxes, from cgroup accounting (sampled at scrape time).", []string{"tenant"}, nil)
	descMem = prometheus.NewDesc("sbx_tenant_memory_bytes", "Memory in use by a tenant's running sandboxes, from cgroup accounting.", []string{"tenant"}, nil)
)

// WatchUsage registers per-tenant CPU-seconds and memory gauges read from
// the cgroups <mount>/<cgroupParent>/<sandbox id> of running sandboxes.
// CPU time is sampled at scrape time: the time a sandbox used after the
// last scrape before it ended is not counted.
func (r *Registry) WatchUsage(st store.Store, cgroupParent string) {
	r.reg.MustRegister(&usageCollector{
		st: st, cg: newCgroupReader(cgroupParent),
		cpu: map[string]float64{}, last: map[string]float64{}, tenant: map[string]string{},
	})
}

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descCPU
	ch <- descMem
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mem := map[string]float64{}
	seen := map[string]bool{}
	c.mu.Lock()
	defer c.mu.Unlock()
	err := scan(ctx, c.st, false, func(sb *sandbox.Sandbox) {
		if sb.State != sandbox.StateRunning {
			return
		}
		cpu, m, ok := c.cg.usage(sb.ID)
		if !ok {
			return
		}
		seen[sb.ID] = true
		if d := cpu - c.last[sb.ID]; d > 0 {
			c.cpu[sb.TenantID] += d
		}
		c.last[sb.ID] = cpu
		c.tenant[sb.ID] = sb.TenantID
		mem[sb.TenantID] += m
	})
	if err != nil {
		slog.Warn("metrics: list sandboxes", "err", err)
		return
	}
	for id := range c.last {
		if !seen[id] {
			delete(c.last, id)
			delete(c.tenant, id)
		}
	}
	for t, v := range c.cpu {
		ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, v, t)
	}
	for t, v := range mem {
		ch <- prometheus.MustNewConstMetric(descMem, prometheus.GaugeValue, v, t)
	}
}
