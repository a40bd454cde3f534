package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sbx-run/sbx"
)

// SBX runs the scenarios against one server through the Go SDK.
type SBX struct {
	C     *sbx.Client
	Image string
	// Key is C's API key, which reading the server's /metrics needs (an
	// admin's: the local tenant's of a started server); without it the
	// scenarios do not wait for the server's teardowns.
	Key string
	// Log receives progress lines.
	Log func(format string, args ...any)
}

// reasonOf names a failure for the error counts: the server's reason
// (QUOTA_EXCEEDED is one), else the error kind.
func reasonOf(err error) string {
	if r := sbx.ReasonOf(err); r != "" {
		return r
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "CLIENT_TIMEOUT"
	}
	return "OTHER: " + err.Error()
}

// deleteAll deletes the sandboxes, 8 at a time.
func (b *SBX) deleteAll(ctx context.Context, sbs []*sbx.Sandbox) {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, sb := range sbs {
		if sb == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := sb.Delete(ctx); err != nil {
				b.Log("delete %s: %v", sb.ID(), err)
			}
		}()
	}
	wg.Wait()
}

// firstOutput creates a sandbox, runs `echo hi` in it and returns the time
// until the first byte of its output, with the time Run took to be
// accepted and the time until RUNNING; the sandbox is deleted afterwards.
func (b *SBX) firstOutput(ctx context.Context) (accepted, running, first, del time.Duration, err error) {
	start := time.Now()
	sb, err := b.C.Run(ctx, sbx.Image(b.Image))
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer func() {
		t := time.Now()
		if derr := sb.Delete(context.WithoutCancel(ctx)); derr == nil {
			del = time.Since(t)
		} else if err == nil {
			err = derr
		}
	}()
	accepted = time.Since(start)
	// As a user would: Exec right away (the server holds it until the
	// sandbox runs), no Wait in between.
	p, err := sb.Exec(ctx, []string{"echo", "hi"})
	if err != nil {
		return 0, 0, 0, 0, err
	}
	if _, err = bufio.NewReader(p.Stdout).ReadByte(); err != nil {
		return 0, 0, 0, 0, fmt.Errorf("read exec output: %w", err)
	}
	first = time.Since(start)
	if _, err = p.Wait(); err != nil {
		return 0, 0, 0, 0, err
	}
	// When it became RUNNING: the server's transition time, read after
	// the timed part (server and harness share this host's clock).
	info, err := sb.Refresh(ctx)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	return accepted, info.StartedAt.Sub(start), first, 0, nil
}

// ColdCreate measures n creates of a cached image to the first output of
// an exec, one at a time. The image is pulled by a warm-up create first.
func (b *SBX) ColdCreate(ctx context.Context, n int) []*Scenario {
	if _, _, _, _, err := b.firstOutput(ctx); err != nil {
		b.Log("cold create warm-up: %v", err)
	}
	first := &Scenario{Name: "cold_create", System: "sbx", Errors: map[string]int{},
		Note: "Run → exec `echo hi` → first output byte, image cached, one at a time"}
	acc := &Scenario{Name: "create_accepted", System: "sbx", Note: "Run returns (record stored, PENDING)"}
	run := &Scenario{Name: "create_running", System: "sbx", Note: "Run → RUNNING (the server's transition time)"}
	del := &Scenario{Name: "delete", System: "sbx", Note: "Delete of the idle sandbox after its exec (not in the create timings)"}
	for i := 0; i < n; i++ {
		a, r, f, d, err := b.firstOutput(ctx)
		if err != nil {
			first.Errors[reasonOf(err)]++
			continue
		}
		acc.Samples = append(acc.Samples, Ms(a))
		run.Samples = append(run.Samples, Ms(r))
		first.Samples = append(first.Samples, Ms(f))
		del.Samples = append(del.Samples, Ms(d))
	}
	return []*Scenario{Finish(first), Finish(acc), Finish(run), Finish(del)}
}

// ExecTrue measures n round trips of `true` (exec started, exit received)
// in one idle sandbox.
func (b *SBX) ExecTrue(ctx context.Context, n int) *Scenario {
	s := &Scenario{Name: "exec_true", System: "sbx", Errors: map[string]int{}, Note: "exec `true` until its exit code, one sandbox"}
	sb, err := b.C.Run(ctx, sbx.Image(b.Image))
	if err != nil {
		s.Errors[reasonOf(err)]++
		return s
	}
	defer sb.Delete(context.WithoutCancel(ctx))
	if err := sb.Wait(ctx); err != nil {
		s.Errors[reasonOf(err)]++
		return s
	}
	for i := -5; i < n; i++ { // five warm-up round trips
		start := time.Now()
		p, err := sb.Exec(ctx, []string{"true"})
		if err == nil {
			var code int
			if code, err = p.Wait(); err == nil && code != 0 {
				err = fmt.Errorf("true exited %d", code)
			}
		}
		if err != nil {
			s.Errors[reasonOf(err)]++
			continue
		}
		if i >= 0 {
			s.Samples = append(s.Samples, Ms(time.Since(start)))
		}
	}
	return Finish(s)
}

// NewPattern returns a reader of size bytes of a repeated random block:
// not compressible by accident, and no memory held per byte sent. Its Len
// tells the SDK the size up front (so that large files take its bulk
// path), as a *bytes.Reader's does.
func NewPattern(size int64) io.Reader { return newPattern(size) }

// patternReader is NewPattern's reader.
type patternReader struct {
	block []byte
	left  int64
	off   int
}

func newPattern(size int64) *patternReader {
	blk := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range blk {
		blk[i] = byte(r.Uint32())
	}
	return &patternReader{block: blk, left: size}
}

// Len is what is left, so that the SDK knows the size up front (and
// uses its bulk path for large files) as for a *bytes.Reader.
func (p *patternReader) Len() int { return int(p.left) }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	n := copy(b, p.block[p.off:])
	if int64(n) > p.left {
		n = int(p.left)
	}
	p.off = (p.off + n) % len(p.block)
	p.left -= int64(n)
	return n, nil
}

// Files writes and reads back a file of each size reps times in one
// sandbox and reports write, read and round-trip throughput in GB/s
// (10^9 bytes); round trip is size ÷ (write time + read time).
//
// Before the measured runs of each size, one warm-up round trip is
// reported apart (first_*_GBps): its writes need page cache this guest
// may never have touched (about 10 µs a page on this VM), while later
// runs reuse the pages the previous file freed.
//
// The sandbox is sized for the files it holds (2 CPUs, 4 GiB): its agent's
// work and the file's page cache count against its own limits, and a 1 GiB
// file in a sandbox of the default 1 GiB is throttled and evicted before
// it is read back.
func (b *SBX) Files(ctx context.Context, sizes []int64, reps []int) []*Scenario {
	var out []*Scenario
	sb, err := b.C.Run(ctx, sbx.Image(b.Image), sbx.Resources{CPUMillis: 2000, MemoryBytes: 4 << 30})
	if err == nil {
		err = sb.Wait(ctx)
	}
	if err != nil {
		return []*Scenario{{Name: "files", System: "sbx", Errors: map[string]int{reasonOf(err): 1}}}
	}
	defer sb.Delete(context.WithoutCancel(ctx))
	for i, size := range sizes {
		s := &Scenario{Name: "file_" + sizeName(size), System: "sbx", Errors: map[string]int{},
			Values: map[string]float64{}, Series: map[string][]float64{},
			Note: "WriteFileFrom then ReadFileTo of " + sizeName(size) + " in /tmp of a 2-CPU 4-GiB sandbox (the previous round's file removed first, untimed), after one warm-up round trip (first_*)"}
		fileRounds(ctx, s, size, reps[i], func() (w, rd time.Duration, err error) {
			// The previous round's file goes first, untimed, as the host
			// floor truncates its file before writing: an atomic replace
			// keeps the old file's pages until the new one is complete,
			// so it would need twice the page cache, and on this VM
			// memory not touched for a few seconds costs ~10 µs a page
			// again (docs/BENCHMARKS.md, file round trip).
			sb.Remove(ctx, "/tmp/bench.bin", false)
			start := time.Now()
			if _, err := sb.WriteFileFrom(ctx, "/tmp/bench.bin", newPattern(size), 0o644); err != nil {
				return 0, 0, err
			}
			w = time.Since(start)
			start = time.Now()
			n, err := sb.ReadFileTo(ctx, "/tmp/bench.bin", io.Discard)
			if err == nil && n != size {
				err = fmt.Errorf("read %d bytes, wrote %d", n, size)
			}
			return w, time.Since(start), err
		})
		sb.Remove(ctx, "/tmp/bench.bin", false)
		b.Log("file %s: %v", sizeName(size), s.Values)
		out = append(out, s)
	}
	return out
}

// fileRounds runs one warm-up round trip of size bytes, reported apart
// (first_*_GBps), then reps measured ones, into s: write, read and round
// trip GB/s and the per-run times.
func fileRounds(ctx context.Context, s *Scenario, size int64, reps int, roundTrip func() (w, rd time.Duration, err error)) {
	if w, rd, err := roundTrip(); err != nil {
		s.Errors[reasonOf(err)]++
	} else {
		s.Values["first_write_GBps"] = float64(size) / w.Seconds() / 1e9
		s.Values["first_read_GBps"] = float64(size) / rd.Seconds() / 1e9
		s.Values["first_roundtrip_GBps"] = float64(size) / (w + rd).Seconds() / 1e9
	}
	var wsum, rsum time.Duration
	ok := 0
	for r := 0; r < reps && ctx.Err() == nil; r++ {
		w, rd, err := roundTrip()
		if err != nil {
			s.Errors[reasonOf(err)]++
			continue
		}
		wsum, rsum, ok = wsum+w, rsum+rd, ok+1
		s.Series["write_ms"] = append(s.Series["write_ms"], Ms(w))
		s.Series["read_ms"] = append(s.Series["read_ms"], Ms(rd))
	}
	if ok > 0 {
		bytes := float64(size) * float64(ok)
		s.Values["write_GBps"] = bytes / wsum.Seconds() / 1e9
		s.Values["read_GBps"] = bytes / rsum.Seconds() / 1e9
		s.Values["roundtrip_GBps"] = bytes / (wsum + rsum).Seconds() / 1e9
	}
}

func sizeName(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dB", n)
}

// createRunning creates a sandbox and waits until it runs; the sandbox is
// returned even on a failed Wait, so that it can be deleted.
func (b *SBX) createRunning(ctx context.Context, opts ...sbx.RunOption) (*sbx.Sandbox, error) {
	sb, err := b.C.Run(ctx, append([]sbx.RunOption{sbx.Image(b.Image)}, opts...)...)
	if err != nil {
		return nil, err
	}
	return sb, sb.Wait(ctx)
}

// Sustained runs workers loops of create → RUNNING → delete for dur and
// reports sandboxes that reached RUNNING per second, overall and per
// second of the run; opts go to every create.
func (b *SBX) Sustained(ctx context.Context, dur time.Duration, workers int, opts ...sbx.RunOption) *Scenario {
	s := &Scenario{Name: "sustained", System: "sbx", Errors: map[string]int{}, Values: map[string]float64{}, Series: map[string][]float64{},
		Note: fmt.Sprintf("%d workers loop create → RUNNING for %s; deletes run in the background", workers, dur)}
	// Deletes are not what is measured: run them apart, and wait for them
	// after the timed window so the next scenario starts clean.
	var deletes sync.WaitGroup
	defer deletes.Wait()
	var mu sync.Mutex
	var events []time.Duration
	running := 0 // sandboxes that reached RUNNING, those after the window included
	busy0, total0 := HostCPU()
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				t0 := time.Now()
				sb, err := b.createRunning(ctx, opts...)
				now := time.Now()
				mu.Lock()
				switch {
				case errors.Is(err, sbx.ErrResourceExhausted):
					// Admission control's answer, not a failure: count it
					// and retry after its delay (below).
					s.Values["resource_exhausted_"+reasonOf(err)]++
				case err != nil:
					s.Errors[reasonOf(err)]++
				case now.Before(end):
					events = append(events, now.Sub(start))
					s.Samples = append(s.Samples, Ms(now.Sub(t0)))
					running++
				default:
					running++
				}
				mu.Unlock()
				if sb != nil {
					deletes.Add(1)
					go func() { defer deletes.Done(); sb.Delete(context.WithoutCancel(ctx)) }()
				}
				if errors.Is(err, sbx.ErrResourceExhausted) {
					time.Sleep(max(sbx.RetryAfterOf(err), 50*time.Millisecond))
				}
			}
		}()
	}
	wg.Wait()
	// The whole host's busy CPU time per sandbox that reached RUNNING: on
	// a host the loop keeps busy, what bounds the rate (its deletes run
	// meanwhile, so in the steady state each sandbox's delete is in it
	// too; so are the harness's own calls). Steadier than the rate on a
	// machine whose speed drifts, where the CPU waits for locks.
	if busy1, total1 := HostCPU(); total1 > total0 && running > 0 {
		s.Values["host_cpu_busy"] = float64(busy1-busy0) / float64(total1-total0)
		s.Values["host_cpu_ms_per_create"] = float64(busy1-busy0) * 10 / float64(running) // clock ticks are 10 ms
	}
	per := PerSecond(events, dur)
	for _, c := range per {
		s.Series["creates_per_second"] = append(s.Series["creates_per_second"], float64(c))
	}
	s.Values["creates_per_second"] = float64(len(events)) / dur.Seconds()
	s.Values["creates_per_second_second_half"] = SecondHalf(per)
	return Finish(s)
}

// Burst starts k creates at the same instant, as k clients that retry
// after the delay of a RESOURCE_EXHAUSTED answer (admission control or
// quota) until they are accepted or ctx ends. Its samples are, for each
// accepted create, the time from the call that was accepted to RUNNING
// (what the p99 ≤ 1 s target is about: accepted work is fast). Its values
// add the percentiles of how long accepted calls took to return
// (accepted_ms_*), of every first answer, accepted or refused (answer_ms_*),
// and of the burst's start to RUNNING with retries (end_to_end_ms_*: what a
// retrying client sees), and the RESOURCE_EXHAUSTED answers by reason with
// their retry delays: refusals with a delay are the intended answer, not
// failures, so Errors holds only real failures. Every sandbox is deleted
// after.
func (b *SBX) Burst(ctx context.Context, k int) *Scenario {
	s := &Scenario{Name: "burst", System: "sbx", Errors: map[string]int{}, Values: map[string]float64{},
		Note: fmt.Sprintf("%d concurrent creates, retried after RESOURCE_EXHAUSTED: accepted call → RUNNING", k)}
	var accepted, answers, endToEnd []float64
	type result struct {
		sb                     *sbx.Sandbox
		err                    error
		running, accepted, e2e time.Duration
		first                  time.Duration
		exhausted              []error
	}
	res := make([]result, k)
	var ready, wg sync.WaitGroup
	gate := make(chan struct{})
	ready.Add(k)
	var start time.Time
	for i := 0; i < k; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready.Done()
			<-gate
			r := &res[i]
			for {
				t0 := time.Now()
				sb, err := b.C.Run(ctx, sbx.Image(b.Image))
				if r.first == 0 {
					r.first = time.Since(t0)
				}
				if errors.Is(err, sbx.ErrResourceExhausted) && ctx.Err() == nil {
					r.exhausted = append(r.exhausted, err)
					select {
					case <-time.After(max(sbx.RetryAfterOf(err), 10*time.Millisecond)):
						continue
					case <-ctx.Done():
					}
				}
				if err != nil {
					r.err = err
					return
				}
				r.sb, r.accepted = sb, time.Since(t0)
				if err := sb.Wait(ctx); err != nil {
					r.err = err
					return
				}
				r.running, r.e2e = time.Since(t0), time.Since(start)
				return
			}
		}()
	}
	ready.Wait()
	start = time.Now()
	close(gate)
	wg.Wait()
	s.Values["wall_s"] = time.Since(start).Seconds()
	s.Values["n"] = float64(k)
	var sbs []*sbx.Sandbox
	var exhausted, withDelay, refusedFirst int
	var delays []float64
	for _, r := range res {
		sbs = append(sbs, r.sb)
		answers = append(answers, Ms(r.first))
		if len(r.exhausted) > 0 {
			refusedFirst++
		}
		for _, err := range r.exhausted {
			exhausted++
			s.Values["resource_exhausted_"+reasonOf(err)]++
			if d := sbx.RetryAfterOf(err); d > 0 {
				withDelay++
				delays = append(delays, Ms(d))
			}
		}
		if r.err != nil {
			s.Errors[reasonOf(r.err)]++
			continue
		}
		s.Samples = append(s.Samples, Ms(r.running))
		accepted = append(accepted, Ms(r.accepted))
		endToEnd = append(endToEnd, Ms(r.e2e))
	}
	s.Values["resource_exhausted_answers"] = float64(exhausted)
	s.Values["resource_exhausted_with_retry_after"] = float64(withDelay)
	s.Values["creates_refused_at_first"] = float64(refusedFirst)
	for name, samples := range map[string][]float64{"accepted_ms": accepted, "answer_ms": answers, "end_to_end_ms": endToEnd, "retry_after_ms": delays} {
		if len(samples) > 0 {
			d := Summarize(samples)
			s.Values[name+"_p50"], s.Values[name+"_p99"], s.Values[name+"_max"] = d.P50, d.P99, d.Max
		}
	}
	b.deleteAll(context.WithoutCancel(ctx), sbs)
	return Finish(s)
}

// Density starts m idle sandboxes (4 creates at a time), lets them settle,
// and reports the host memory, cgroup memory, agent RSS and processes each
// costs; serverRSS (may be nil) reads the server's resident memory.
//
// whileAlive, if set, runs once the measurements are taken, before the
// sandboxes are deleted, with the number alive.
func (b *SBX) Density(ctx context.Context, m int, serverRSS func() int64, whileAlive func(alive int)) *Scenario {
	s := &Scenario{Name: "density", System: "sbx", Errors: map[string]int{}, Values: map[string]float64{},
		Note: fmt.Sprintf("%d idle sandboxes", m)}
	time.Sleep(2 * time.Second) // let earlier deletes finish
	mem0, _ := MemUsedBytes()
	procs0 := ProcessCount()
	var srv0 int64
	if serverRSS != nil {
		srv0 = serverRSS()
	}
	sbs := make([]*sbx.Sandbox, m)
	var alive atomic.Int64
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := 0; i < m; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			sb, err := b.createRunning(ctx)
			sbs[i] = sb
			if err != nil {
				mu.Lock()
				s.Errors[reasonOf(err)]++
				mu.Unlock()
				return
			}
			alive.Add(1)
		}()
	}
	wg.Wait()
	time.Sleep(3 * time.Second) // idle: let page cache and lazy allocations settle
	mem1, _ := MemUsedBytes()
	procs1 := ProcessCount()
	var ids []string
	for _, sb := range sbs {
		if sb != nil {
			ids = append(ids, sb.ID())
		}
	}
	cg, cgFound := CgroupMemory(ids)
	pids := CgroupProcs(ids)
	agentRSS, agents := RSSOf(pids, "sbx-agent")
	allRSS, _ := RSSOf(pids, "")
	n := float64(alive.Load())
	if n > 0 {
		s.Values["alive"] = n
		s.Values["host_mem_MiB_per_sandbox"] = float64(mem1-mem0) / n / (1 << 20)
		// Host-wide counts include other work on the machine; the
		// sandboxes' own cgroups do not.
		s.Values["host_procs_per_sandbox"] = float64(procs1-procs0) / n
		s.Values["procs_per_sandbox"] = float64(len(pids)) / n
		s.Values["sandbox_rss_MiB_per_sandbox"] = float64(allRSS) / n / (1 << 20)
		s.Values["sandbox_pss_MiB_per_sandbox"] = float64(PSSOf(pids)) / n / (1 << 20)
		if cgFound > 0 {
			s.Values["cgroup_mem_MiB_per_sandbox"] = float64(cg) / float64(cgFound) / (1 << 20)
		}
		if agents > 0 {
			s.Values["agent_rss_MiB"] = float64(agentRSS) / float64(agents) / (1 << 20)
		}
		if serverRSS != nil {
			s.Values["server_rss_MiB_per_sandbox"] = float64(serverRSS()-srv0) / n / (1 << 20)
		}
	}
	if whileAlive != nil && n > 0 {
		whileAlive(int(n))
	}
	b.deleteAll(context.WithoutCancel(ctx), sbs)
	return s
}

// Finish fills the latency summary from the samples.
func Finish(s *Scenario) *Scenario {
	if len(s.Samples) > 0 {
		sum := Summarize(s.Samples)
		s.Latency = &sum
	}
	return s
}

// Quiesce waits, at most max, until the server has no runtime teardown
// queued or running (its /metrics gauges sbx_teardowns_queued and
// sbx_teardowns_running), so that a scenario does not time the teardowns
// of the sandboxes an earlier one deleted: the server defers those while
// creates come. A server without the gauges is not waited for. It returns
// how long it waited.
func (b *SBX) Quiesce(ctx context.Context, max time.Duration) time.Duration {
	return b.quiesceURL(ctx, b.C.URL(), max)
}

func (b *SBX) quiesceURL(ctx context.Context, url string, max time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < max && ctx.Err() == nil {
		busy, ok := teardownsBusy(ctx, url, b.Key)
		if !ok || !busy {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// teardownsBusy reads the teardown gauges from url's /metrics.
func teardownsBusy(ctx context.Context, url, key string) (busy, ok bool) {
	req, err := http.NewRequestWithContext(ctx, "GET", httpBase(url)+"/metrics", nil)
	if err != nil {
		return false, false
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := httpClientOf(url).Do(req)
	if err != nil {
		return false, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	found := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && (f[0] == "sbx_teardowns_queued" || f[0] == "sbx_teardowns_running") {
			found++
			if f[1] != "0" {
				busy = true
			}
		}
	}
	return busy, found == 2
}
