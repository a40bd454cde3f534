package bench

import (
	"context"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/internal/testenv"
)

func TestTargetMet(t *testing.T) {
	if !(Target{Value: 60, Max: true}).Met(60) || (Target{Value: 60, Max: true}).Met(61) {
		t.Error("a max target is met at or below its value only")
	}
	if !(Target{Value: 100}).Met(100) || (Target{Value: 100}).Met(99) {
		t.Error("a min target is met at or above its value only")
	}
}

func TestMarkdownRow(t *testing.T) {
	tgt := TargetColdP50
	md := Markdown([]Metric{
		{Name: "cold p50", Unit: "ms", SBX: F(30), Target: &tgt, Podman: F(420), Crun: F(15), Host: F(10)},
		{Name: "a|b", Unit: "ms", SBX: F(90), Target: &tgt},
		{Name: "not measured", Unit: "ms", SBX: F(math.NaN())},
	}, "crun")
	lines := strings.Split(strings.TrimSpace(md), "\n")
	if len(lines) != 5 {
		t.Fatalf("want header, rule and 3 rows, got:\n%s", md)
	}
	if !strings.Contains(lines[0], "crun (floor)") {
		t.Errorf("header does not name the floor: %s", lines[0])
	}
	want := "| cold p50 | 30.0 ms | ≤ 60.0 ms | yes | 420 ms | 0.071× | 15.0 ms | 2.00× | 10.0 ms | 3.00× |"
	if lines[2] != want {
		t.Errorf("row\n got %s\nwant %s", lines[2], want)
	}
	if !strings.Contains(lines[3], `a\|b`) || !strings.Contains(lines[3], "| no |") {
		t.Errorf("pipe not escaped or target wrongly met: %s", lines[3])
	}
	if lines[4] != "| not measured | — | — | — | — | — | — | — | — | — |" {
		t.Errorf("missing figures should be dashes: %s", lines[4])
	}
}

func TestBuildMetricsAndReport(t *testing.T) {
	r := &Report{Command: "sbx-bench --creates 2", Machine: Machine{CPUs: 2, Commit: "abc1234"}}
	sum := func(v ...float64) *Scenario { s := &Scenario{Samples: v}; return Finish(s) }
	add := func(name, sys string, s *Scenario) *Scenario {
		s.Name, s.System = name, sys
		r.Scenarios = append(r.Scenarios, s)
		return s
	}
	add("cold_create", "sbx", sum(50, 70))
	add("cold_create", "podman", sum(400, 500))
	add("run_exit", "podman", sum(500, 500))
	add("cold_create", "crun", sum(20, 30))
	add("exec_true", "sbx", sum(1, 3))
	add("sustained", "sbx", &Scenario{Values: map[string]float64{"creates_per_second": 120, "creates_per_second_second_half": 80,
		"host_cpu_ms_per_create": 16.5, "host_cpu_busy": 0.9}})
	b := add("burst", "sbx", sum(100, 900))
	b.Values = map[string]float64{"n": 500}
	b.Errors = map[string]int{"QUOTA_EXCEEDED": 3, "RUNTIME_ERROR": 1}
	add("file_1GiB", "sbx", &Scenario{Values: map[string]float64{"roundtrip_GBps": 1.5}})
	add("file_1GiB", "host", &Scenario{Values: map[string]float64{"roundtrip_GBps": 3}})
	add("exec_true", "host", sum(0.5, 0.7))
	add("run_parallel", "crun", &Scenario{Values: map[string]float64{"per_second": 55, "workers": 2, "cpu_ms_per_run": 36, "cpu_ms_per_run_one_at_a_time": 33}})
	add("sustained_crowded", "sbx", &Scenario{Values: map[string]float64{"creates_per_second": 70, "host_cpu_ms_per_create": 26.5, "host_cpu_busy": 0.92, "idle_alive": 600}})
	add("sustained_deny_egress", "sbx", &Scenario{Values: map[string]float64{"creates_per_second": 90, "host_cpu_ms_per_create": 19.5, "host_cpu_busy": 0.9}})

	m := BuildMetrics(r, "crun")
	get := func(prefix string) Metric {
		for _, x := range m {
			if strings.HasPrefix(x.Name, prefix) {
				return x
			}
		}
		t.Fatalf("no metric %q in %+v", prefix, m)
		return Metric{}
	}
	if c := get("sustained creates per second with 600 idle sandboxes alive"); c.SBX == nil || *c.SBX != 70 {
		t.Errorf("sustained among idle sandboxes: %+v", c)
	}
	if c := get("sustained with 600 idle sandboxes alive: host CPU"); c.SBX == nil || *c.SBX != 26.5 || !c.LowerIsBetter {
		t.Errorf("host CPU per life among idle sandboxes: %+v", c)
	}
	if c := get("sustained creates per second, each sandbox with deny_egress"); c.SBX == nil || *c.SBX != 90 {
		t.Errorf("sustained with deny_egress: %+v", c)
	}
	if c := get("sustained with deny_egress: host CPU"); c.SBX == nil || *c.SBX != 19.5 || !c.LowerIsBetter {
		t.Errorf("host CPU per life with deny_egress: %+v", c)
	}
	if c := get("sustained creates per second, second half"); c.SBX == nil || *c.SBX != 80 {
		t.Errorf("second half of the sustained run: %+v", c)
	}
	if c := get("sustained: host CPU per sandbox life"); c.SBX == nil || *c.SBX != 16.5 || !c.LowerIsBetter || !strings.Contains(c.Note, "90 % busy") {
		t.Errorf("host CPU per sandbox life of the sustained run: %+v", c)
	}
	if c := get("cold create → first output, p50"); *c.SBX != 50 || *c.Podman != 400 || *c.Crun != 20 || c.Target == nil {
		t.Errorf("cold p50 row: %+v", c)
	}
	if s := get("sustained"); *s.SBX != 120 || *s.Podman != 2 || s.Crun != nil {
		t.Errorf("sustained row (podman 1 ÷ 500 ms = 2/s, no floor): %+v", s)
	}
	if p := get("cold creates per second vs the bare runtime"); *p.SBX != 120 || *p.Crun != 55 || p.Target == nil {
		t.Errorf("parallel floor row: %+v", p)
	}
	if c := get("CPU per bare runtime life"); *c.Crun != 36 || !strings.Contains(c.Note, "33.0 ms") {
		t.Errorf("floor CPU row: %+v", c)
	}
	if e := get("burst failures other"); *e.SBX != 1 || e.Target.Met(*e.SBX) {
		t.Errorf("burst failures should count only non-quota errors and miss the target: %+v", e)
	}
	if q := get("burst QUOTA_EXCEEDED"); *q.SBX != 3 {
		t.Errorf("quota answers: %+v", q)
	}
	if p := get("burst → RUNNING, p99"); p.Target == nil || *p.SBX != 900 {
		t.Errorf("burst of 500 should carry the p99 target: %+v", p)
	}
	if f := get("file 1GiB round trip"); f.Target == nil || !f.Target.Met(*f.SBX) || f.Host == nil || *f.Host != 3 {
		t.Errorf("1 GiB round trip row: %+v", f)
	}
	if e := get("exec `true` round trip, p50"); e.Host == nil || *e.Host != 0.5 {
		t.Errorf("exec row lacks the host floor: %+v", e)
	}
	r.Metrics = m
	md := RenderReport(r, "crun", []string{"create_latency.png"})
	for _, want := range []string{"`sbx-bench --creates 2`", "abc1234", "| sbx | burst | RUNTIME_ERROR | 1 |", "![create_latency](create_latency.png)"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// TestHostFloor runs the host floor's two measurements for real, small.
func TestHostFloor(t *testing.T) {
	testenv.Require(t, false, "busybox")
	if _, err := os.Stat(HostBusybox); err != nil {
		t.Fatalf("busybox-static is not at %s: %v", HostBusybox, err)
	}
	ex := HostExec(context.Background(), 3)
	if ex.Latency == nil || ex.Latency.N != 3 || len(ex.Errors) > 0 {
		t.Errorf("host exec: %+v", ex)
	}
	fs := HostFiles(context.Background(), t.TempDir(), []int64{1 << 20}, []int{2})
	if len(fs) != 1 || fs[0].Name != "file_1MiB" || fs[0].Values["roundtrip_GBps"] <= 0 || fs[0].Values["first_write_GBps"] <= 0 || len(fs[0].Errors) > 0 {
		t.Errorf("host files: %+v", fs)
	}
}
