package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/bench/chart"
)

// maxInFlight bounds the pool scenario's creates in flight: an offered
// create that would pass it is not sent and counted as not offered, so a
// stalled server cannot make the harness start thousands of goroutines.
const maxInFlight = 500

// achievedWithin is how soon after being offered a create must reach its
// first output to count in the pool scenario's achieved rate (the issue's
// bound on a burst's p99).
const achievedWithin = time.Second

// poolStatus returns the server's pool for image, or an error when it has
// none.
func (b *SBX) poolStatus(ctx context.Context, image string) (sbx.PoolInfo, error) {
	pools, err := b.C.ListPools(ctx)
	if err != nil {
		return sbx.PoolInfo{}, err
	}
	for _, p := range pools {
		if p.Image == image {
			return p, nil
		}
	}
	return sbx.PoolInfo{}, fmt.Errorf("the server has no warm pool for %s", image)
}

// PoolRate offers creates of image, which the server keeps a warm pool of,
// at a fixed rate for dur (open loop: one every 1/rate s, whatever the
// answers), each Run → RUNNING → exec `echo hi` → first output byte, then
// deleted in the background. It first waits until the pool is full (its
// fill time and rate are the cold refill rate of an idle server), and
// after the run watches the pool refill for watch.
//
// Samples are create → first output of every create that got there.
// Values: achieved_per_s (creates that reached first output within
// achievedWithin of being offered ÷ the window; first_outputs_in_window_per_s
// counts the first outputs inside the window instead),
// offered_per_s, hits and misses (claims from the pool, cold creates),
// sustained_s (how long the rate held: the end of the last second, from
// the start, in which every second reached 90 % of the rate with hits
// only), hit_ms_* and miss_ms_* percentiles, the refill rate while the pool
// was drained and after the run, and RESOURCE_EXHAUSTED answers by
// reason (explicit refusals, not failures). Series: first outputs, hits
// and the pool's idle sandboxes at each second.
//
// serverCPU (may be nil) reads the server's CPU time: its CPU per create
// during the run is reported as server_cpu_ms_per_create, next to the
// host's (host_cpu_busy, the share of all CPUs busy during the run).
func (b *SBX) PoolRate(ctx context.Context, image string, rate float64, dur, watch time.Duration, serverCPU func() time.Duration) *Scenario {
	s := &Scenario{Name: "pool_rate", System: "sbx", Errors: map[string]int{}, Values: map[string]float64{}, Series: map[string][]float64{},
		Note: fmt.Sprintf("%.0f creates/s offered for %s from a warm pool: Run → RUNNING → exec echo hi → first output; deletes in the background", rate, dur)}
	p, err := b.poolStatus(ctx, image)
	if err != nil {
		s.Note = "skipped: " + err.Error()
		return s
	}
	size := max(p.MinIdle, 1)
	fillStart := time.Now()
	refills0 := p.Refills
	for p.Idle < size {
		if time.Since(fillStart) > 5*time.Minute {
			s.Note = fmt.Sprintf("skipped: pool %s holds %d of %d idle after 5m (last error %q)", p.Key, p.Idle, size, p.LastError)
			return s
		}
		time.Sleep(100 * time.Millisecond)
		if p, err = b.poolStatus(ctx, image); err != nil {
			s.Note = "skipped: " + err.Error()
			return s
		}
	}
	fill := time.Since(fillStart)
	s.Values["pool_size"] = float64(size)
	if n := p.Refills - refills0; n > 0 {
		s.Values["fill_s"] = fill.Seconds()
		s.Values["fill_per_s"] = float64(n) / fill.Seconds()
	}
	b.Log("pool %s full: %d idle (filled in %s)", p.Key, p.Idle, fill.Round(time.Millisecond))

	type result struct {
		at        time.Duration // offered at, from the start
		done      time.Duration // first output, from the start
		latency   time.Duration
		phases    [3]time.Duration // Run returned, RUNNING, exec started
		warm      bool
		err       error
		exhausted bool
	}
	var (
		mu       sync.Mutex
		results  []result
		inFlight int
		skipped  int
		work     sync.WaitGroup
		deletes  sync.WaitGroup
	)
	defer deletes.Wait()
	one := func(at time.Duration, start time.Time) {
		defer work.Done()
		t0 := time.Now()
		r := result{at: at}
		sb, err := b.C.Run(ctx, sbx.Image(image))
		r.phases[0] = time.Since(t0)
		if err == nil {
			r.warm = claimedWarm(sb.Info())
			deletes.Add(1)
			defer func() {
				go func() { defer deletes.Done(); sb.Delete(context.WithoutCancel(ctx)) }()
			}()
			if err = sb.Wait(ctx); err == nil {
				r.phases[1] = time.Since(t0)
				var proc *sbx.Process
				if proc, err = sb.Exec(ctx, []string{"echo", "hi"}); err == nil {
					r.phases[2] = time.Since(t0)
					if _, err = bufio.NewReader(proc.Stdout).ReadByte(); err == nil {
						r.latency, r.done = time.Since(t0), time.Since(start)
					}
					proc.Wait()
				}
			}
		}
		r.err, r.exhausted = err, errors.Is(err, sbx.ErrResourceExhausted)
		mu.Lock()
		results = append(results, r)
		inFlight--
		mu.Unlock()
	}
	type level struct {
		at   time.Duration
		idle int
	}
	levels := []level{{0, p.Idle}}
	refillsAtStart := p.Refills
	var cpu0 time.Duration
	if serverCPU != nil {
		cpu0 = serverCPU()
	}
	busy0, total0 := HostCPU()
	start := time.Now()
	n := int(rate * dur.Seconds())
	nextPoll := time.Second
	for i := 0; i < n; i++ {
		at := time.Duration(float64(i) / rate * float64(time.Second))
		if d := time.Until(start.Add(at)); d > 0 {
			time.Sleep(d)
		}
		if at >= nextPoll { // the pool's level once a second, off the hot path
			nextPoll += time.Second
			go func(at time.Duration) {
				if p, err := b.poolStatus(ctx, image); err == nil {
					mu.Lock()
					levels = append(levels, level{at, p.Idle})
					mu.Unlock()
				}
			}(at)
		}
		mu.Lock()
		if inFlight >= maxInFlight {
			skipped++
			mu.Unlock()
			continue
		}
		inFlight++
		mu.Unlock()
		work.Add(1)
		go one(at, start)
	}
	work.Wait()
	if serverCPU != nil {
		s.Values["server_cpu_ms_per_create"] = Ms(serverCPU()-cpu0) / float64(n)
	}
	busy1, total1 := HostCPU()
	if total1 > total0 {
		s.Values["host_cpu_busy"] = float64(busy1-busy0) / float64(total1-total0)
	}
	window := dur
	afterRun := time.Now()
	p2, _ := b.poolStatus(ctx, image)
	s.Values["refill_during_per_s"] = float64(p2.Refills-refillsAtStart) / afterRun.Sub(start).Seconds()
	// The refill rate afterwards, once the run's deletes are through.
	deletes.Wait()
	if watch > 0 {
		w0 := time.Now()
		time.Sleep(watch)
		if p3, err := b.poolStatus(ctx, image); err == nil {
			s.Values["refill_after_per_s"] = float64(p3.Refills-p2.Refills) / time.Since(w0).Seconds()
			s.Values["idle_after"] = float64(p3.Idle)
		}
	}

	secs := int(window / time.Second)
	if window%time.Second != 0 {
		secs++
	}
	done, hits := make([]float64, secs), make([]float64, secs)
	var hitMs, missMs []float64
	var ok int
	for _, r := range results {
		switch {
		case r.exhausted:
			s.Values["resource_exhausted_"+reasonOf(r.err)]++
			continue
		case r.err != nil:
			s.Errors[reasonOf(r.err)]++
			continue
		}
		s.Samples = append(s.Samples, Ms(r.latency))
		if r.warm {
			s.Values["hits"]++
			hitMs = append(hitMs, Ms(r.latency))
		} else {
			s.Values["misses"]++
			missMs = append(missMs, Ms(r.latency))
		}
		if r.done < window {
			ok++
			i := int(r.done / time.Second)
			done[i]++
			if r.warm {
				hits[i]++
			}
		}
	}
	// What the host can hold: its busy CPU time during the run (claims,
	// execs, the deletes that finished meanwhile, and whatever else ran)
	// per create that reached first output, and the rate all its CPUs
	// would sustain at that cost. An offered rate above it only queues.
	if reached := len(s.Samples); reached > 0 && busy1 > busy0 {
		perCreate := float64(busy1-busy0) * 10 / float64(reached) // clock ticks are 10 ms
		s.Values["host_cpu_ms_per_create"] = perCreate
		s.Values["host_capacity_per_s"] = float64(runtime.NumCPU()) * 1000 / perCreate
	}
	// Where a create's time goes: p50 of each step's end, from the create.
	for i, name := range []string{"run_returned", "running", "exec_started"} {
		var v []float64
		for _, r := range results {
			if r.err == nil && r.phases[i] > 0 {
				v = append(v, Ms(r.phases[i]))
			}
		}
		if len(v) > 0 {
			s.Values["phase_"+name+"_ms_p50"] = Summarize(v).P50
		}
	}
	s.Values["offered"] = float64(n)
	s.Values["offered_per_s"] = rate
	s.Values["not_offered_client_cap"] = float64(skipped)
	s.Values["first_outputs_in_window_per_s"] = float64(ok) / window.Seconds()
	// The rate achieved: creates offered in the window that reached their
	// first output within achievedWithin of being offered, ÷ the window. A
	// server that keeps up serves every offered create in time and reaches
	// the offered rate; counted in the window itself, it would miss the
	// creates still in flight at its end, however fast; one that falls
	// behind serves ever later and drops below.
	inTime := 0
	for _, r := range results {
		if r.err == nil && r.done > 0 && r.latency <= achievedWithin {
			inTime++
		}
	}
	s.Values["achieved_per_s"] = float64(inTime) / window.Seconds()
	// How long the rate held: whole seconds from the start in which 90 %
	// of the rate reached first output, all of them from the pool.
	held := 0
	for i := 0; i < secs && done[i] >= 0.9*rate && hits[i] == done[i]; i++ {
		held++
	}
	s.Values["sustained_s"] = float64(held)
	s.Series["first_outputs_per_second"] = done
	s.Series["hits_per_second"] = hits
	mu.Lock()
	sort.Slice(levels, func(i, j int) bool { return levels[i].at < levels[j].at })
	for _, l := range levels {
		s.Series["pool_idle"] = append(s.Series["pool_idle"], float64(l.idle))
	}
	mu.Unlock()
	for name, v := range map[string][]float64{"hit_ms": hitMs, "miss_ms": missMs} {
		if len(v) > 0 {
			d := Summarize(v)
			s.Values[name+"_p50"], s.Values[name+"_p99"], s.Values[name+"_max"] = d.P50, d.P99, d.Max
		}
	}
	return Finish(s)
}

// poolRateMetrics are the result rows of the pool_rate scenario; the
// baselines' rates are 1 ÷ their mean run-to-exit, as for sustained.
func poolRateMetrics(r *Report, s *Scenario, floor string) []Metric {
	rate := func(sys string) float64 {
		if e := r.Find("run_exit", sys); e != nil && e.Latency != nil {
			return 1000 / e.Latency.Mean
		}
		return math.NaN()
	}
	ptr := func(t Target) *Target { return &t }
	offered := fmt.Sprintf("%.0f/s offered for %.0f s, pool of %.0f", value(s, "offered_per_s"), value(s, "offered")/value(s, "offered_per_s"), value(s, "pool_size"))
	return []Metric{
		{Name: "creates per second from a warm pool, to first output", Unit: "/s", Target: ptr(TargetCreatesSec),
			SBX: F(value(s, "achieved_per_s")), Podman: F(rate("podman")), Crun: F(rate(floor)), Note: offered + "; counted: first outputs within 1 s of the offer; baselines: 1 ÷ mean run-to-exit, one at a time"},
		{Name: "pool_rate first outputs inside the window, per second (creates still in flight at its end not counted)", Unit: "/s", SBX: F(value(s, "first_outputs_in_window_per_s"))},
		{Name: "seconds the offered rate held (≥ 90 %, all from the pool)", Unit: "s", SBX: F(value(s, "sustained_s"))},
		{Name: "pool_rate create → first output, p50", Unit: "ms", LowerIsBetter: true, SBX: F(latency(s, p50))},
		{Name: "pool_rate create → first output, p99", Unit: "ms", LowerIsBetter: true, SBX: F(latency(s, p99))},
		{Name: "pool_rate claims from the pool (hits) / cold creates (misses)", Unit: "", SBX: F(value(s, "hits")), Note: fmt.Sprintf("misses: %.0f", s.Values["misses"])},
		{Name: "pool_rate server CPU per create (claim, exec, delete)", Unit: "ms", LowerIsBetter: true, SBX: F(value(s, "server_cpu_ms_per_create"))},
		{Name: "pool_rate host CPU per create (whole host, during the window)", Unit: "ms", LowerIsBetter: true, SBX: F(value(s, "host_cpu_ms_per_create"))},
		{Name: "pool_rate host CPU busy during the run", Unit: "", SBX: F(value(s, "host_cpu_busy"))},
		{Name: "pool refill rate while drained", Unit: "/s", SBX: F(value(s, "refill_during_per_s"))},
		{Name: "pool refill rate after the run", Unit: "/s", SBX: F(value(s, "refill_after_per_s"))},
		{Name: "pool fill rate of an idle server", Unit: "/s", SBX: F(value(s, "fill_per_s"))},
		{Name: "pool_rate failures other than RESOURCE_EXHAUSTED", Unit: "", LowerIsBetter: true, Target: ptr(Target{Value: 0, Max: true}), SBX: F(float64(otherErrors(s)))},
	}
}

// poolRateChart draws the pool_rate scenario over time: first outputs and
// claims from the pool per second, and the pool's idle sandboxes.
func poolRateChart(s *Scenario) chart.Line {
	xs := func(n int, from float64) []float64 {
		x := make([]float64, n)
		for i := range x {
			x[i] = from + float64(i)
		}
		return x
	}
	done, hits, idle := s.Series["first_outputs_per_second"], s.Series["hits_per_second"], s.Series["pool_idle"]
	return chart.Line{Title: fmt.Sprintf("Creates from a warm pool at %.0f/s offered", value(s, "offered_per_s")),
		XLabel: "second of the run", YLabel: "per second / idle sandboxes",
		Series: []chart.Series{
			{Name: "first outputs/s", X: xs(len(done), 1), Y: done},
			{Name: "from the pool/s", X: xs(len(hits), 1), Y: hits},
			{Name: "idle in the pool", X: xs(len(idle), 0), Y: idle},
		}}
}

// HostCPU returns the host's busy and total CPU time in clock ticks, from
// /proc/stat (busy: all but idle and iowait).
func HostCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// ProcCPU is the CPU time (user and system) the processes pids used so far.
func ProcCPU(pids []int) time.Duration { return procStatCPU(pids, false) }

// ProcTreeCPU is ProcCPU plus the CPU time of the children pids reaped
// (a sandbox's agent reaps the processes it ran).
func ProcTreeCPU(pids []int) time.Duration { return procStatCPU(pids, true) }

func procStatCPU(pids []int, children bool) time.Duration {
	// The fields after the command's closing parenthesis: utime, stime,
	// cutime and cstime are the 12th to 15th of them.
	fields := []int{11, 12}
	if children {
		fields = append(fields, 13, 14)
	}
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b)[i+1:])
		for _, k := range fields {
			if k < len(f) {
				v, _ := strconv.ParseInt(f[k], 10, 64)
				ticks += v
			}
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}
