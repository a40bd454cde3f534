package bench

import (
	"math"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct{ p, want float64 }{
		{0, 1}, {10, 1}, {11, 2}, {50, 5}, {90, 9}, {95, 10}, {99, 10}, {100, 10},
	} {
		if got := Percentile(s, c.p); got != c.want {
			t.Errorf("Percentile(1..10, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("Percentile of no samples should be NaN")
	}
}

func TestSummarize(t *testing.T) {
	samples := []float64{9, 1, 5, 3, 7} // unsorted on purpose
	got := Summarize(samples)
	want := Summary{N: 5, Min: 1, Mean: 5, P50: 5, P95: 9, P99: 9, Max: 9}
	if got != want {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
	if samples[0] != 9 {
		t.Error("Summarize sorted the caller's slice")
	}
	if (Summarize(nil) != Summary{}) {
		t.Error("Summarize(nil) should be the zero Summary")
	}
}

func TestPerSecond(t *testing.T) {
	ev := []time.Duration{0, 999 * time.Millisecond, time.Second, 2500 * time.Millisecond, 3 * time.Second, -time.Second}
	got := PerSecond(ev, 3*time.Second)
	want := []int{2, 1, 1} // 3 s and the negative offset fall outside [0, 3s)
	if len(got) != len(want) {
		t.Fatalf("PerSecond = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("PerSecond = %v, want %v", got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{OCIRuntime: "crun", Creates: 50, Execs: 200, Workers: 4, Burst: 100, Density: 300, BaselineRun: 30, Sustained: 10 * time.Second}
	c := ok
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Quota != 302 {
		t.Errorf("default quota = %d, want density+2 = 302", c.Quota)
	}
	crowded := ok
	crowded.Crowded = 10 * time.Second
	if err := crowded.Validate(); err != nil || crowded.Quota != 300+2+32*crowded.Workers {
		t.Errorf("quota with the crowded loop = %d (%v), want room for its sandboxes too", crowded.Quota, err)
	}
	for name, mut := range map[string]func(*Config){
		"creates":                 func(c *Config) { c.Creates = 0 },
		"burst":                   func(c *Config) { c.Burst = 1_000_000 },
		"runtime":                 func(c *Config) { c.OCIRuntime = "docker" },
		"duration":                func(c *Config) { c.Sustained = time.Hour },
		"quota":                   func(c *Config) { c.Quota = -1 },
		"crowded without density": func(c *Config) { c.Crowded, c.Density = time.Second, 0 },
		"crowded too long":        func(c *Config) { c.Crowded = time.Hour },
		"deny_egress too long":    func(c *Config) { c.DenyEgress = time.Hour },
	} {
		c := ok
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
	}
}

func TestSecondHalf(t *testing.T) {
	// A rate that falls: the whole run's mean hides it, its second half shows it.
	if got := SecondHalf([]int{90, 80, 60, 40, 30}); got != (60+40+30)/3.0 {
		t.Errorf("odd length: %v", got)
	}
	if got := SecondHalf([]int{100, 100, 50, 50}); got != 50 {
		t.Errorf("even length: %v", got)
	}
	if got := SecondHalf([]int{7}); !math.IsNaN(got) {
		t.Errorf("one second: %v, want NaN", got)
	}
}
