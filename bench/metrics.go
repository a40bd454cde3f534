package bench

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/sbx-run/sbx/bench/chart"
)

// Targets from issue 6 (step 5), on a 2-core machine.
var (
	TargetColdP50    = Target{Value: 60, Max: true}   // ms
	TargetExecP50    = Target{Value: 2, Max: true}    // ms
	TargetCreatesSec = Target{Value: 100}             // creates/s
	TargetMemPerSbx  = Target{Value: 5, Max: true}    // MiB
	TargetIdleCount  = Target{Value: 1000}            // sandboxes
	TargetFileGBps   = Target{Value: 1}               // GB/s, 1 GiB round trip
	TargetBurstP99   = Target{Value: 1000, Max: true} // ms, burst of 500
	TargetWarmP50    = Target{Value: 10, Max: true}   // ms (warm pools)
	TargetWarmP99    = Target{Value: 30, Max: true}   // ms (warm pools)
)

func latency(s *Scenario, pick func(Summary) float64) float64 {
	if s == nil || s.Latency == nil {
		return math.NaN()
	}
	return pick(*s.Latency)
}

func value(s *Scenario, key string) float64 {
	if s == nil {
		return math.NaN()
	}
	if v, ok := s.Values[key]; ok {
		return v
	}
	return math.NaN()
}

func p50(s Summary) float64  { return s.P50 }
func p95(s Summary) float64  { return s.P95 }
func p99(s Summary) float64  { return s.P99 }
func pmax(s Summary) float64 { return s.Max }

// BuildMetrics turns the scenarios into the rows of the results table,
// each with its target (where issue 6 sets one) and the baselines' figure
// for the same thing. floor names the bare OCI runtime's system.
func BuildMetrics(r *Report, floor string) []Metric {
	cold, pCold, fCold := r.Find("cold_create", "sbx"), r.Find("cold_create", "podman"), r.Find("cold_create", floor)
	warm := r.Find("warm_create", "sbx")
	ex, pEx, fEx := r.Find("exec_true", "sbx"), r.Find("exec_true", "podman"), r.Find("exec_true", floor)
	hEx := r.Find("exec_true", "host")
	ptr := func(t Target) *Target { return &t }
	m := []Metric{
		{Name: "cold create → first output, p50", Unit: "ms", LowerIsBetter: true, Target: ptr(TargetColdP50),
			SBX: F(latency(cold, p50)), Podman: F(latency(pCold, p50)), Crun: F(latency(fCold, p50))},
		{Name: "cold create → first output, p99", Unit: "ms", LowerIsBetter: true,
			SBX: F(latency(cold, p99)), Podman: F(latency(pCold, p99)), Crun: F(latency(fCold, p99))},
		{Name: "create → RUNNING, p50", Unit: "ms", LowerIsBetter: true, SBX: F(latency(r.Find("create_running", "sbx"), p50))},
		{Name: "create accepted (Run returns), p50", Unit: "ms", LowerIsBetter: true, SBX: F(latency(r.Find("create_accepted", "sbx"), p50))},
		{Name: "delete of an idle sandbox, p50", Unit: "ms", LowerIsBetter: true, SBX: F(latency(r.Find("delete", "sbx"), p50))},
		{Name: "warm create → first output, p50", Unit: "ms", LowerIsBetter: true, Target: ptr(TargetWarmP50),
			SBX: F(latency(warm, p50)), Podman: F(latency(pCold, p50)), Crun: F(latency(fCold, p50)), Note: "baselines: their cold run"},
		{Name: "warm create → first output, p99", Unit: "ms", LowerIsBetter: true, Target: ptr(TargetWarmP99),
			SBX: F(latency(warm, p99)), Podman: F(latency(pCold, p99)), Crun: F(latency(fCold, p99))},
		{Name: "exec `true` round trip, p50", Unit: "ms", LowerIsBetter: true, Target: ptr(TargetExecP50),
			SBX: F(latency(ex, p50)), Podman: F(latency(pEx, p50)), Crun: F(latency(fEx, p50)), Host: F(latency(hEx, p50))},
		{Name: "exec `true` round trip, p99", Unit: "ms", LowerIsBetter: true,
			SBX: F(latency(ex, p99)), Podman: F(latency(pEx, p99)), Crun: F(latency(fEx, p99)), Host: F(latency(hEx, p99))},
	}
	for _, s := range r.Scenarios {
		if s.System != "sbx" || len(s.Name) < 5 || s.Name[:5] != "file_" {
			continue
		}
		size := s.Name[5:]
		h := r.Find(s.Name, "host")
		var t *Target
		if size == "1GiB" {
			t = ptr(TargetFileGBps)
		}
		m = append(m,
			Metric{Name: "file " + size + " write", Unit: "GB/s", SBX: F(value(s, "write_GBps")), Host: F(value(h, "write_GBps"))},
			Metric{Name: "file " + size + " read", Unit: "GB/s", SBX: F(value(s, "read_GBps")), Host: F(value(h, "read_GBps"))},
			Metric{Name: "file " + size + " round trip (size ÷ (write + read time))", Unit: "GB/s", Target: t, SBX: F(value(s, "roundtrip_GBps")), Host: F(value(h, "roundtrip_GBps"))},
			Metric{Name: "file " + size + " first run (warm-up) write", Unit: "GB/s", SBX: F(value(s, "first_write_GBps")), Host: F(value(h, "first_write_GBps")), Note: "page cache this guest may never have touched"},
			Metric{Name: "file " + size + " first run (warm-up) read", Unit: "GB/s", SBX: F(value(s, "first_read_GBps")), Host: F(value(h, "first_read_GBps"))},
			Metric{Name: "file " + size + " first run (warm-up) round trip", Unit: "GB/s", SBX: F(value(s, "first_roundtrip_GBps")), Host: F(value(h, "first_roundtrip_GBps"))})
	}
	if sus := r.Find("sustained", "sbx"); sus != nil {
		var pRate, fRate float64 = math.NaN(), math.NaN()
		// A one-at-a-time baseline's best rate is 1 / its mean run time.
		if e := r.Find("run_exit", "podman"); e != nil && e.Latency != nil {
			pRate = 1000 / e.Latency.Mean
		}
		if e := r.Find("run_exit", floor); e != nil && e.Latency != nil {
			fRate = 1000 / e.Latency.Mean
		}
		m = append(m, Metric{Name: "sustained creates per second", Unit: "/s", Target: ptr(TargetCreatesSec),
			SBX: F(value(sus, "creates_per_second")), Podman: F(pRate), Crun: F(fRate),
			Note: "baselines: 1 ÷ mean run-to-exit, one at a time"},
			Metric{Name: "sustained creates per second, second half of the run", Unit: "/s",
				SBX:  F(value(sus, "creates_per_second_second_half")),
				Note: "a rate that holds only while work is deferred falls here"},
			Metric{Name: "sustained: host CPU per sandbox life (create → RUNNING → delete, whole host)", Unit: "ms", LowerIsBetter: true,
				SBX:  F(value(sus, "host_cpu_ms_per_create")),
				Note: fmt.Sprintf("host %.0f %% busy; steadier than the rate where the machine's speed drifts", 100*value(sus, "host_cpu_busy"))})
	}
	if par := r.Find("run_parallel", floor); par != nil {
		// The runtime alone, as many lives at once as there are cores:
		// what cold creates could reach here if sbx added nothing.
		m = append(m, Metric{Name: "cold creates per second vs the bare runtime, lives in parallel", Unit: "/s", Target: ptr(TargetCreatesSec),
			SBX: F(value(r.Find("sustained", "sbx"), "creates_per_second")), Crun: F(value(par, "per_second")),
			Note: fmt.Sprintf("%s: %.0f workers, each `%s run` to exit; sbx: the sustained scenario", floor, value(par, "workers"), floor)},
			Metric{Name: "CPU per bare runtime life (its processes and the container's, rusage)", Unit: "ms", LowerIsBetter: true,
				Crun: F(value(par, "cpu_ms_per_run")), Note: fmt.Sprintf("one at a time: %.1f ms", value(par, "cpu_ms_per_run_one_at_a_time"))})
	}
	if pr := r.Find("pool_rate", "sbx"); pr != nil && pr.Latency != nil {
		m = append(m, poolRateMetrics(r, pr, floor)...)
	}
	if b := r.Find("burst", "sbx"); b != nil {
		var t *Target
		if b.Values["n"] >= 500 {
			t = ptr(TargetBurstP99)
		}
		m = append(m,
			Metric{Name: "burst → RUNNING, p50", Unit: "ms", LowerIsBetter: true, SBX: F(latency(b, p50))},
			Metric{Name: "burst → RUNNING, p95", Unit: "ms", LowerIsBetter: true, SBX: F(latency(b, p95))},
			Metric{Name: "burst → RUNNING, p99", Unit: "ms", LowerIsBetter: true, SBX: F(latency(b, p99)), Target: t,
				Note: "target is for a burst of 500"},
			Metric{Name: "burst → RUNNING, max", Unit: "ms", LowerIsBetter: true, SBX: F(latency(b, pmax))},
			Metric{Name: "burst failures other than QUOTA_EXCEEDED", Unit: "", LowerIsBetter: true, Target: ptr(Target{Value: 0, Max: true}),
				SBX: F(float64(otherErrors(b)))},
			Metric{Name: "burst QUOTA_EXCEEDED answers", Unit: "", SBX: F(float64(b.Errors["QUOTA_EXCEEDED"]))})
	}
	if d := r.Find("sustained_deny_egress", "sbx"); d != nil {
		m = append(m,
			Metric{Name: "sustained creates per second, each sandbox with deny_egress", Unit: "/s",
				SBX: F(value(d, "creates_per_second")), Note: "a network policy of their own"},
			Metric{Name: "sustained with deny_egress: host CPU per sandbox life", Unit: "ms", LowerIsBetter: true,
				SBX: F(value(d, "host_cpu_ms_per_create")), Note: fmt.Sprintf("host %.0f %% busy", 100*value(d, "host_cpu_busy"))})
	}
	if c := r.Find("sustained_crowded", "sbx"); c != nil {
		alive := value(c, "idle_alive")
		m = append(m,
			Metric{Name: fmt.Sprintf("sustained creates per second with %.0f idle sandboxes alive", alive), Unit: "/s",
				SBX: F(value(c, "creates_per_second")), Note: "the density scenario's sandboxes, before they are deleted"},
			Metric{Name: fmt.Sprintf("sustained with %.0f idle sandboxes alive: host CPU per sandbox life", alive), Unit: "ms", LowerIsBetter: true,
				SBX: F(value(c, "host_cpu_ms_per_create")), Note: fmt.Sprintf("host %.0f %% busy", 100*value(c, "host_cpu_busy"))})
	}
	if d := r.Find("density", "sbx"); d != nil {
		var idle *Target
		if d.Values["alive"] >= 1000 || len(d.Errors) > 0 {
			idle = ptr(TargetIdleCount)
		}
		m = append(m,
			Metric{Name: "idle sandboxes alive at once", Unit: "", Target: idle, SBX: F(value(d, "alive")), Note: "target: 1000, run with --density 1000"},
			Metric{Name: "host memory per idle sandbox (MemTotal − MemAvailable)", Unit: "MiB", LowerIsBetter: true, Target: ptr(TargetMemPerSbx), SBX: F(value(d, "host_mem_MiB_per_sandbox"))},
			Metric{Name: "cgroup memory per idle sandbox", Unit: "MiB", LowerIsBetter: true, SBX: F(value(d, "cgroup_mem_MiB_per_sandbox"))},
			Metric{Name: "PSS of a sandbox's processes (shared pages split)", Unit: "MiB", LowerIsBetter: true, SBX: F(value(d, "sandbox_pss_MiB_per_sandbox"))},
			Metric{Name: "RSS of a sandbox's processes (shared pages counted in each)", Unit: "MiB", LowerIsBetter: true, SBX: F(value(d, "sandbox_rss_MiB_per_sandbox"))},
			Metric{Name: "agent RSS", Unit: "MiB", LowerIsBetter: true, SBX: F(value(d, "agent_rss_MiB"))},
			Metric{Name: "server RSS growth per idle sandbox", Unit: "MiB", LowerIsBetter: true, SBX: F(value(d, "server_rss_MiB_per_sandbox"))},
			Metric{Name: "processes per idle sandbox (in its cgroup)", Unit: "", LowerIsBetter: true, SBX: F(value(d, "procs_per_sandbox"))},
			Metric{Name: "host processes per idle sandbox (whole host, noisy)", Unit: "", LowerIsBetter: true, SBX: F(value(d, "host_procs_per_sandbox"))})
	}
	return m
}

func otherErrors(s *Scenario) int {
	n := 0
	for k, v := range s.Errors {
		if k != "QUOTA_EXCEEDED" {
			n += v
		}
	}
	return n
}

// WriteCharts draws the report's PNGs into dir and returns their names.
func WriteCharts(r *Report, dir, floor string) ([]string, error) {
	var names []string
	save := func(name string, draw func(*os.File) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := draw(f); err != nil {
			f.Close()
			return err
		}
		names = append(names, name)
		return f.Close()
	}
	cdf := func(title, file string, scen ...*Scenario) error {
		var ss []chart.Series
		for _, s := range scen {
			if s != nil && len(s.Samples) > 0 {
				ss = append(ss, chart.CDF(s.System+" "+s.Name, s.Samples))
			}
		}
		if len(ss) == 0 {
			return nil
		}
		c := chart.Line{Title: title, XLabel: "latency (ms, log scale)", YLabel: "% of samples <= x", LogX: true, YMax: 100, Series: ss}
		return save(file, func(f *os.File) error { return c.Encode(f) })
	}
	if err := cdf("Create -> first output: latency distribution (CDF)", "create_latency.png",
		r.Find("cold_create", "sbx"), r.Find("cold_create", "podman"), r.Find("cold_create", floor), r.Find("warm_create", "sbx")); err != nil {
		return names, err
	}
	if err := cdf("Exec `true` round trip: latency distribution (CDF)", "exec_latency.png",
		r.Find("exec_true", "sbx"), r.Find("exec_true", "podman"), r.Find("exec_true", floor)); err != nil {
		return names, err
	}
	if err := cdf("Concurrent burst and sustained creates -> RUNNING (CDF)", "burst_latency.png",
		r.Find("burst", "sbx"), r.Find("sustained", "sbx")); err != nil {
		return names, err
	}
	if s := r.Find("sustained", "sbx"); s != nil && len(s.Series["creates_per_second"]) > 0 {
		ys := s.Series["creates_per_second"]
		xs := make([]float64, len(ys))
		for i := range xs {
			xs[i] = float64(i + 1)
		}
		c := chart.Line{Title: "Sustained creates: sandboxes reaching RUNNING per second", XLabel: "second of the run",
			YLabel: "creates/s", Series: []chart.Series{{Name: "sbx", X: xs, Y: ys}}}
		if err := save("sustained_throughput.png", func(f *os.File) error { return c.Encode(f) }); err != nil {
			return names, err
		}
	}
	if s := r.Find("pool_rate", "sbx"); s != nil && len(s.Series["first_outputs_per_second"]) > 0 {
		if err := save("pool_rate.png", func(f *os.File) error { return poolRateChart(s).Encode(f) }); err != nil {
			return names, err
		}
	}
	// Percentiles side by side for every latency scenario that has a baseline.
	groups := []string{"cold create p50", "cold create p99", "warm create p50", "exec p50", "exec p99"}
	bars := chart.Bars{Title: "sbx vs podman vs " + floor + " (ms, log scale; lower is better)", YLabel: "ms", LogY: true, Groups: groups}
	for _, sys := range []string{"sbx", "podman", floor} {
		c, w, e := r.Find("cold_create", sys), r.Find("warm_create", sys), r.Find("exec_true", sys)
		bars.Series = append(bars.Series, chart.BarSeries{Name: sys, Values: []float64{
			latency(c, p50), latency(c, p99), latency(w, p50), latency(e, p50), latency(e, p99)}})
	}
	err := save("compare.png", func(f *os.File) error { return bars.Encode(f) })
	return names, err
}
