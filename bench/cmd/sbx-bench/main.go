// Command sbx-bench runs sbx's benchmark scenarios against a real server
// (started here with the offline busybox image, or given with --url) and,
// in the same run on the same image, the podman and bare OCI runtime
// baselines; it writes report.json, report.md and PNG charts to --out.
//
//	go run ./bench/cmd/sbx-bench --out /tmp/sbx-bench
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/bench"
	"github.com/sbx-run/sbx/internal/testenv"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == bench.FloorArg {
		if err := bench.RunFloorChild(os.Args[2], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
		return
	}
	var cfg bench.Config
	out := flag.String("out", "bench-out", "directory for report.json, report.md and the PNG charts")
	flag.StringVar(&cfg.URL, "url", "", "benchmark this running server (with --api-key or the SDK's credentials) instead of starting one")
	apiKey := flag.String("api-key", "", "API key for --url (default: SBX_API_KEY or the credentials file)")
	flag.StringVar(&cfg.Image, "image", "busybox", "image of the sbx scenarios (the baselines always use the offline busybox)")
	flag.StringVar(&cfg.Transport, "transport", "unix", "how the SDK reaches the started server: unix (its API socket, as local clients do by default) or tcp (loopback); --url decides for itself")
	flag.StringVar(&cfg.OCIRuntime, "oci-runtime", "crun", "OCI runtime of the started server and of the floor: crun or runc")
	flag.IntVar(&cfg.Creates, "creates", 50, "cold creates, one at a time")
	flag.IntVar(&cfg.Warm, "warm", 30, "creates from a warm pool (0 skips them)")
	flag.StringVar(&cfg.WarmImage, "warm-image", "busybox:pool", "image of the warm scenario: the started server pools it (2 idle); with --url the server must have a pool for it")
	flag.IntVar(&cfg.Execs, "execs", 200, "exec round trips")
	flag.DurationVar(&cfg.Sustained, "sustained", 10*time.Second, "duration of the sustained-creates scenario (0 skips it)")
	flag.IntVar(&cfg.Workers, "workers", 4, "concurrent create loops in the sustained scenario")
	flag.DurationVar(&cfg.Crowded, "sustained-crowded", 0, "run the sustained loop again for this long while the density scenario's idle sandboxes are alive (0 skips it)")
	flag.DurationVar(&cfg.DenyEgress, "sustained-deny-egress", 0, "run the sustained loop again for this long with deny_egress on every sandbox, a network policy of their own (0 skips it)")
	flag.IntVar(&cfg.Burst, "burst", 100, "concurrent creates in the burst (0 skips it)")
	flag.Float64Var(&cfg.PoolRate, "pool-rate", 100, "creates per second offered from a warm pool in the pool_rate scenario (0 skips it); the started server gets a second run with that pool")
	flag.DurationVar(&cfg.PoolFor, "pool-for", 5*time.Second, "how long the pool_rate scenario offers its rate")
	flag.IntVar(&cfg.PoolSize, "pool-size", 0, "idle sandboxes of the pool_rate scenario's pool (1..1000; default: what the offered creates need plus 10 %, at least 400)")
	flag.StringVar(&cfg.PoolImage, "pool-image", "busybox:rate", "image of the pool_rate scenario: the started server pools it; with --url the server must have a pool for it")
	serveArgs := flag.String("serve-args", "", "more flags for the started `sbx serve`, space-separated (e.g. \"--max-concurrent-creates 4\")")
	serverBin := flag.String("server-bin", "", "directory holding prebuilt sbx and sbx-agent binaries to benchmark (default: build them from this module)")
	flag.IntVar(&cfg.Density, "density", 100, "idle sandboxes in the density scenario (0 skips it)")
	flag.IntVar(&cfg.Quota, "quota", 0, "per-tenant sandbox quota of the started server (default max(100, burst, density+2))")
	flag.BoolVar(&cfg.Full, "full", false, "also move a 1 GiB file")
	flag.BoolVar(&cfg.Baselines, "baselines", true, "run the podman and bare OCI runtime baselines")
	flag.IntVar(&cfg.BaselineRun, "baseline-runs", 30, "runs (and execs) of each baseline")
	flag.Parse()
	cfg.ServeArgs = strings.Fields(*serveArgs)
	if cfg.PoolSize == 0 {
		// A pool smaller than the creates offered caps the scenario at
		// its size over the window (400 in 5 s is 80/s), whatever the
		// server's speed: the rest would be cold creates.
		cfg.PoolSize = min(max(400, int(math.Ceil(cfg.PoolRate*cfg.PoolFor.Seconds()*1.1))), 1000)
	}
	if err := cfg.Validate(); err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, *out, *apiKey, *serverBin); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sbx-bench:", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func run(ctx context.Context, cfg bench.Config, out, apiKey, serverBin string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	began := time.Now()
	host, _ := os.Hostname()
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	r := &bench.Report{
		Command: "sbx-bench " + strings.Join(os.Args[1:], " "),
		Config:  cfg,
		Machine: bench.Machine{Host: host, Kernel: strings.TrimSpace(string(kernel)), CPUs: runtime.NumCPU(),
			CPUModel: bench.CPUModel(), MemTotalMiB: memTotalMiB(), LoadBefore: bench.LoadAvg(),
			GoVersion: runtime.Version(), OCIRuntime: cfg.OCIRuntime, StartedAt: began.UTC().Format(time.RFC3339),
			Commit: commit()},
	}
	// A short work dir: agent sockets live under the server's data dir.
	work, err := os.MkdirTemp("/tmp", "sbxb-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// Searchable, as /var/lib is: the servers' sandboxes then get user
	// namespaces, as on a default install (their roots must reach their
	// rootfs in the data dir).
	if err := os.Chmod(work, 0o711); err != nil {
		return err
	}

	add := func(s ...*bench.Scenario) {
		r.Scenarios = append(r.Scenarios, s...)
		for _, x := range s {
			if x.Latency != nil {
				logf("%s/%s: n=%d p50=%.2fms p99=%.2fms max=%.2fms errors=%v", x.System, x.Name, x.Latency.N, x.Latency.P50, x.Latency.P99, x.Latency.Max, x.Errors)
			} else {
				logf("%s/%s: %v errors=%v", x.System, x.Name, x.Values, x.Errors)
			}
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	// The baselines run first, on a machine no sbx server has loaded yet
	// (a stopped server's sandboxes are torn down in the background).
	sizes, reps := []int64{1 << 20, 100 << 20}, []int{20, 3}
	if cfg.Full {
		// Three measured rounds of 1 GiB: one alone swung by ±50 % with the
		// machine's other work.
		sizes, reps = append(sizes, 1<<30), append(reps, 3)
	}
	if cfg.Baselines {
		runBaselines(sctx, r, cfg, work, add)
		logf("host floor: fork+exec × %d, file throughput", cfg.Execs)
		add(bench.HostExec(sctx, cfg.Execs))
		add(bench.HostFiles(sctx, work, sizes, reps)...)
	}

	var client *sbx.Client
	var key string
	var srv *bench.Server
	var bins [2]string // sbx and sbx-agent of a started server
	if cfg.URL == "" {
		sbxBin, agentBin := filepath.Join(serverBin, "sbx"), filepath.Join(serverBin, "sbx-agent")
		if serverBin == "" {
			logf("building sbx and sbx-agent")
			if sbxBin, agentBin, err = bench.BuildBinaries(work); err != nil {
				return err
			}
		}
		bins = [2]string{sbxBin, agentBin}
		logf("starting sbx serve (%s) with the offline busybox image", cfg.OCIRuntime)
		warmImage := ""
		if cfg.Warm > 0 {
			warmImage = cfg.WarmImage
		}
		srv, err = bench.StartServer(ctx, filepath.Join(work, "s"), sbxBin, agentBin, cfg.OCIRuntime, cfg.Quota, warmImage, cfg.ServeArgs...)
		if err != nil {
			return err
		}
		defer srv.Stop()
		// No SDK retries: the burst and sustained scenarios count the
		// server's CREATE_QUEUE_FULL answers and retry themselves.
		client, err = sbx.NewClient(sbx.WithURL(srv.ClientURL(cfg.Transport)), sbx.WithAPIKey(srv.Key), sbx.WithCreateRetries(0))
		if err != nil {
			return err
		}
		key = srv.Key
	} else {
		key = cmp.Or(apiKey, os.Getenv(sbx.EnvAPIKey))
		opts := []sbx.ClientOption{sbx.WithURL(cfg.URL), sbx.WithCreateRetries(0)}
		if apiKey != "" {
			opts = append(opts, sbx.WithAPIKey(apiKey))
		}
		if client, err = sbx.NewClient(opts...); err != nil {
			return err
		}
	}
	r.Machine.Transport = client.Transport()
	logf("SDK to server over %s (%s)", client.Transport(), client.URL())
	b := &bench.SBX{C: client, Image: cfg.Image, Log: logf, Key: key}

	logf("cold create × %d", cfg.Creates)
	add(b.ColdCreate(sctx, cfg.Creates)...)
	if cfg.Warm > 0 {
		logf("warm create × %d (%s)", cfg.Warm, cfg.WarmImage)
		w := b.WarmCreate(sctx, cfg.Warm, cfg.WarmImage)
		if w.Latency == nil {
			r.Notes = append(r.Notes, "warm create: "+w.Note)
		}
		add(w)
	}
	// Each scenario from here starts on a server that finished tearing
	// down what the one before deleted (it defers those while creates
	// come), so that none times another's leftovers.
	quiesce := func() {
		if d := b.Quiesce(sctx, time.Minute); d > 100*time.Millisecond {
			logf("waited %.1f s for the server's teardowns", d.Seconds())
		}
	}
	quiesce()
	logf("exec true × %d", cfg.Execs)
	add(b.ExecTrue(sctx, cfg.Execs))
	quiesce()
	logf("file throughput")
	add(b.Files(sctx, sizes, reps)...)
	if cfg.Sustained > 0 {
		quiesce()
		logf("sustained creates for %s, %d workers", cfg.Sustained, cfg.Workers)
		add(b.Sustained(sctx, cfg.Sustained, cfg.Workers))
	}
	if cfg.DenyEgress > 0 {
		quiesce()
		logf("sustained creates for %s with deny_egress, %d workers", cfg.DenyEgress, cfg.Workers)
		s := b.Sustained(sctx, cfg.DenyEgress, cfg.Workers, sbx.Network{DenyEgress: true})
		s.Name = "sustained_deny_egress"
		s.Note += ", each sandbox with deny_egress"
		add(s)
	}
	if cfg.Burst > 0 {
		quiesce()
		logf("burst of %d", cfg.Burst)
		add(b.Burst(sctx, cfg.Burst))
	}
	if cfg.Density > 0 {
		quiesce()
		logf("density: %d idle sandboxes", cfg.Density)
		var rss func() int64
		if srv != nil {
			rss = srv.RSS
		}
		var crowded func(alive int)
		if cfg.Crowded > 0 {
			crowded = func(alive int) {
				logf("sustained creates for %s with %d idle sandboxes alive, %d workers", cfg.Crowded, alive, cfg.Workers)
				s := b.Sustained(sctx, cfg.Crowded, cfg.Workers)
				s.Name = "sustained_crowded"
				s.Values["idle_alive"] = float64(alive)
				s.Note += fmt.Sprintf(", with %d idle sandboxes alive", alive)
				add(s)
			}
		}
		add(b.Density(sctx, cfg.Density, rss, crowded))
	}
	if srv != nil {
		srv.Stop() // pool_rate starts a server of its own
		srv = nil
	}
	if cfg.PoolRate > 0 && cfg.PoolFor > 0 {
		logf("pool_rate: %.0f creates/s for %s from a pool of %d (%s)", cfg.PoolRate, cfg.PoolFor, cfg.PoolSize, cfg.PoolImage)
		add(poolRate(sctx, cfg, work, bins, b))
	}
	r.Machine.LoadAfter = bench.LoadAvg()
	r.Machine.DurationSec = int(time.Since(began).Seconds())
	r.Metrics = bench.BuildMetrics(r, cfg.OCIRuntime)
	if err := r.WriteJSON(filepath.Join(out, "report.json")); err != nil {
		return err
	}
	charts, err := bench.WriteCharts(r, out, cfg.OCIRuntime)
	if err != nil {
		return err
	}
	md := bench.RenderReport(r, cfg.OCIRuntime, charts)
	if err := os.WriteFile(filepath.Join(out, "report.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	logf("wrote %s/report.json, report.md and %d charts in %s", out, len(charts), time.Since(began).Round(time.Second))
	return nil
}

// poolRate runs the pool_rate scenario: against --url as it is, or on a
// server of its own started with the pool (so that filling it disturbs no
// other scenario), stopped after.
func poolRate(ctx context.Context, cfg bench.Config, work string, bins [2]string, b *bench.SBX) *bench.Scenario {
	if cfg.URL != "" {
		return b.PoolRate(ctx, cfg.PoolImage, cfg.PoolRate, cfg.PoolFor, 5*time.Second, nil)
	}
	quota := cfg.PoolSize + int(cfg.PoolRate*cfg.PoolFor.Seconds()) + 100
	srv, err := bench.StartPoolServer(ctx, filepath.Join(work, "p"), bins[0], bins[1], cfg.OCIRuntime, quota, cfg.PoolImage, cfg.PoolSize, cfg.ServeArgs...)
	if err != nil {
		return &bench.Scenario{Name: "pool_rate", System: "sbx", Note: "skipped: " + err.Error()}
	}
	defer srv.Stop()
	client, err := sbx.NewClient(sbx.WithURL(srv.ClientURL(cfg.Transport)), sbx.WithAPIKey(srv.Key), sbx.WithCreateRetries(0))
	if err != nil {
		return &bench.Scenario{Name: "pool_rate", System: "sbx", Note: "skipped: " + err.Error()}
	}
	pb := &bench.SBX{C: client, Image: cfg.PoolImage, Log: b.Log, Key: srv.Key}
	return pb.PoolRate(ctx, cfg.PoolImage, cfg.PoolRate, cfg.PoolFor, 5*time.Second,
		func() time.Duration { return bench.ProcCPU(srv.ServingPIDs()) })
}

func runBaselines(ctx context.Context, r *bench.Report, cfg bench.Config, work string, add func(...*bench.Scenario)) {
	img, err := testenv.NewBusyboxImage()
	if err != nil {
		r.Notes = append(r.Notes, "baselines skipped: "+err.Error())
		return
	}
	pdir := filepath.Join(work, "podman")
	os.MkdirAll(pdir, 0o755)
	logf("podman baseline: loading busybox from an OCI archive")
	if p, err := bench.NewPodman(ctx, pdir, img); err != nil {
		r.Notes = append(r.Notes, "podman baseline skipped: "+err.Error())
		logf("podman: %v", err)
	} else {
		r.Machine.Podman = p.Version()
		logf("podman run × %d", cfg.BaselineRun)
		add(p.Run(ctx, cfg.BaselineRun)...)
		logf("podman exec × %d", cfg.BaselineRun)
		add(p.Exec(ctx, cfg.BaselineRun))
		p.Close()
	}
	fdir := filepath.Join(work, "floor")
	os.MkdirAll(fdir, 0o755)
	logf("%s floor: run × %d, exec × %d", cfg.OCIRuntime, cfg.BaselineRun, cfg.BaselineRun)
	if err := bench.PrepareBundles(ctx, fdir, cfg.OCIRuntime, img); err != nil {
		r.Notes = append(r.Notes, "floor skipped: "+err.Error())
		return
	}
	res, err := bench.RunFloor(ctx, bench.FloorConfig{Runtime: cfg.OCIRuntime, Dir: fdir, Runs: cfg.BaselineRun, Execs: cfg.BaselineRun,
		Parallel: runtime.NumCPU(), ParallelRuns: cfg.BaselineRun})
	if err != nil {
		r.Notes = append(r.Notes, "floor failed: "+err.Error())
		logf("floor: %v", err)
		return
	}
	sys := cfg.OCIRuntime
	add(bench.Finish(&bench.Scenario{Name: "cold_create", System: sys, Samples: res.RunFirst, Errors: res.Errors,
		Note: sys + " run of an unpacked busybox bundle (echo hi) → first output byte"}),
		bench.Finish(&bench.Scenario{Name: "run_exit", System: sys, Samples: res.RunExit, Note: "same, until " + sys + " exits"}),
		bench.Finish(&bench.Scenario{Name: "exec_true", System: sys, Samples: res.Exec, Note: sys + " exec CTR true"}))
	if res.ParallelRate > 0 {
		add(&bench.Scenario{Name: "run_parallel", System: sys, Note: fmt.Sprintf("%d workers each run the echo bundle to exit %d times", runtime.NumCPU(), cfg.BaselineRun),
			Values: map[string]float64{"per_second": res.ParallelRate, "workers": float64(runtime.NumCPU()),
				"cpu_ms_per_run": res.ParallelCPU, "cpu_ms_per_run_one_at_a_time": res.CPUPerRun}})
	}
}

func memTotalMiB() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	var kb int64
	fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
	return kb / 1024
}

func commit() string {
	out, err := exec.Command("git", "-C", testenv.ModuleRoot(), "log", "-1", "--format=%h").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
