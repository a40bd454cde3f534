package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/image"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/metrics"
	"github.com/sbx-run/sbx/internal/proxy"
	"github.com/sbx-run/sbx/internal/runtime/local"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/server"
)

// ExitCode is returned by Run in the parent process when the server ran in a
// re-executed child (see local.EnterMountNamespace): the caller exits with it.
type ExitCode int

func (e ExitCode) Error() string { return fmt.Sprintf("server exited with code %d", int(e)) }

// Run validates cfg and serves until ctx ends or SIGTERM/SIGINT arrives. On
// a hybrid-cgroup host with crun, the server re-executes itself in a private
// mount namespace first; then Run returns ExitCode in the parent. Shutdown
// stops taking requests, lets in-flight ones finish (up to
// ShutdownTimeout) and leaves every sandbox running for the next start.
func Run(ctx context.Context, cfg Config) error {
	tuneGC()
	if err := cfg.Validate(); err != nil {
		return err
	}
	// One server per data dir, before anything in it is touched. The
	// re-executed child runs while its parent, which holds the lock, waits.
	private := local.InPrivateMountNamespace()
	if !private {
		lock, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return err
		}
		defer lock.Close()
	}
	// In the host's mount namespace, before the private one (disk.go).
	disk, err := cfg.openDiskPool()
	if err != nil {
		return err
	}
	runRoot, err := local.OpenRunRoot(cfg.DataDir, private)
	if err != nil {
		releaseDiskPool(disk)
		return fmt.Errorf("run root for sandboxes' runtime state: %w", err)
	}
	// Before anything starts goroutines of ours: the parent only waits.
	code, reexeced, err := local.EnterMountNamespace(cfg.Runtime)
	if err != nil {
		return fmt.Errorf("prepare a mount namespace for %s: %w", cfg.Runtime, err)
	}
	if reexeced {
		releaseDiskPool(disk)
		releaseRunRoot(runRoot)
		return ExitCode(code)
	}
	defer releaseDiskPool(disk)
	if !private {
		// In the host's namespace: nothing else releases it.
		defer releaseRunRoot(runRoot)
	}
	log := newLogger(cfg.LogLevel)
	slog.SetDefault(log)
	logDiskPool(log, disk)

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go sweepHostCgroup2(log)
	if disk != nil {
		go disk.Watch(ctx, log)
		// Done before the pool is released: it holds a descriptor of it.
		reclaimed := make(chan struct{})
		go func() { defer close(reclaimed); disk.Reclaim(ctx, log) }()
		defer func() { stop(); <-reclaimed }()
	}

	agentPath, err := findAgent(cfg.AgentPath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o711); err != nil {
		return fmt.Errorf("create data dir %s: %w", cfg.DataDir, err)
	}
	if st, err := os.Stat(cfg.DataDir); err == nil && cfg.UserNS != "off" && cfg.Runtime != "runsc" && st.Mode().Perm()&0o001 == 0 {
		// A sandbox's root, an unprivileged host uid under --userns, must
		// search its way to its rootfs (local/userns.go); what is in the
		// data dir stays private (0700 dirs, 0600 files).
		if err := os.Chmod(cfg.DataDir, st.Mode().Perm()|0o001); err != nil {
			return fmt.Errorf("let sandboxes' user namespaces search the data dir %s: %w", cfg.DataDir, err)
		}
	}
	// Listen before the slow parts, so a port in use fails fast and clients
	// connecting early queue instead of being refused.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (is another sbx serve running? choose another with --listen): %w", cfg.Listen, err)
	}
	conns := newConnLimit(connectionLimit(cfg.MaxConnections))
	ln = conns.wrap(ln)
	defer ln.Close()
	// The same API on a Unix socket for local clients (unixsock.go), under
	// the same connection bound.
	var uln net.Listener
	socket := cfg.unixSocketPath()
	if socket != "" {
		l, closeUnix, err := listenUnix(socket)
		if err != nil {
			return err
		}
		defer closeUnix()
		uln = conns.wrap(l)
	}
	// /metrics with no key (--metrics-listen), served once the rest is up.
	var mln net.Listener
	if cfg.MetricsListen != "" {
		if mln, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return fmt.Errorf("metrics listen on %s: %w", cfg.MetricsListen, err)
		}
		defer mln.Close()
	}
	// The network next: a second server with this one's bridge or table
	// fails here, before it touches the store or the image cache.
	netMgr, releaseNetwork, err := cfg.openNetwork(runRoot)
	if err != nil {
		return err
	}
	defer releaseNetwork()
	if netMgr != nil {
		defer netMgr.Close()
	}

	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	secretMgr, err := openSecrets(cfg, st, log)
	if err != nil {
		return err
	}

	icfg, err := cfg.imageConfig()
	if err != nil {
		return err
	}
	if runRoot != "" {
		icfg.UsesDir = filepath.Join(runRoot, local.RunRootImageUses)
	}
	reg := metrics.New()
	icfg.OnPull = reg.ObservePull
	images, err := image.New(icfg)
	if err != nil {
		return err
	}
	// Spool files of imports that a killed server left behind.
	if err := os.RemoveAll(cfg.importDir()); err != nil {
		return fmt.Errorf("clean the import spool dir %s: %w", cfg.importDir(), err)
	}
	resolver, err := cfg.startResolver(netMgr, log)
	if err != nil {
		return err
	}
	if resolver != nil {
		defer resolver.Close() // before netMgr.Close: it opens addresses through it
	}
	defaultDisk, maxDisk := cfg.diskDefaults()
	lrt, err := local.New(ctx, local.Config{
		Network:     netMgr,
		Root:        filepath.Join(cfg.DataDir, "sandboxes"),
		RunRoot:     runRoot,
		Runtime:     cfg.Runtime,
		RuntimePath: cfg.RuntimePath,
		AgentPath:   agentPath,
		Images:      images,
		Defaults: sandbox.Resources{
			CPUMillis:   cfg.DefaultCPUMillis,
			MemoryBytes: cfg.DefaultMemoryBytes,
			Pids:        cfg.DefaultPids,
			DiskBytes:   defaultDisk,
		},
		Disk:   disk,
		UserNS: cfg.UserNS,
	})
	if err != nil {
		return fmt.Errorf("local runtime: %w", err)
	}
	defer func() {
		// After the manager closed (deferred later): the networks kept
		// for reuse go; the sandboxes' stay.
		if err := lrt.Close(context.WithoutCancel(ctx)); err != nil {
			log.Warn("tearing down the network namespaces kept for reuse", "err", err)
		}
	}()
	if n, err := lrt.ReleaseImageUses(); err != nil {
		log.Warn("releasing images of sandboxes that are gone", "err", err)
	} else if n > 0 {
		log.Info("released images of sandboxes that are gone (the host restarted?)", "uses", n)
	}
	if n := lrt.OldLayout(); n > 0 {
		log.Warn("sandboxes of an earlier sbx keep their runtime state under the data dir; this server keeps it there too until they are gone (restart it then to move it to the run root, a tmpfs)", "sandboxes", n, "run_root", runRoot)
	}
	if on, why := lrt.UserNamespaces(); !on && why != nil {
		log.Warn("sandboxes run without user namespaces: sandbox root is host root (--userns=on makes this an error)", "reason", why)
	}
	if err := lrt.StaticSkipped(); err != nil {
		log.Warn("not running sbx's static build of the OCI runtime", "runtime", cfg.Runtime, "reason", err)
	}
	rt := reg.InstrumentRuntime(lrt)

	// The port proxy needs the manager and is made after it; a sandbox
	// that stops closes the proxy's connections into it.
	var proxyRef atomic.Pointer[proxy.Proxy]
	mgr, err := lifecycle.New(rt, st, lifecycle.Config{
		DefaultLifetime:       time.Duration(cfg.DefaultLifetime),
		MaxLifetime:           time.Duration(cfg.MaxLifetime),
		Retention:             time.Duration(cfg.Retention),
		MaxSandboxesPerTenant: cfg.MaxSandboxesPerTenant,
		MaxDiskBytes:          maxDisk,
		MaxConcurrentCreates:  cfg.MaxConcurrentCreates,
		CreateQueue:           cfg.CreateQueue,
		CreateLatencyTarget:   time.Duration(cfg.CreateLatencyTarget),
		TeardownParallel:      cfg.TeardownParallel,
		NoNameResolver:        cfg.Network == "bridge" && len(cfg.NetworkDNS) > 0,
		DefaultLease:          time.Duration(cfg.DefaultLease),
		LifetimeBackstop:      time.Duration(cfg.LifetimeBackstop),
		MaxLease:              time.Duration(cfg.MaxLease),
		Pools:                 cfg.lifecyclePools(),
		OnPoolRefill:          reg.ObservePoolRefill,
		OnTeardown:            reg.ObserveTeardown,
		Park:                  lrt.Park,
		OnStopping: func(id string) {
			if p := proxyRef.Load(); p != nil {
				p.CloseSandbox(id)
			}
		},
		Secrets: secretMgr,
		Logger:  log,
	})
	if err != nil {
		return err
	}
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("recover sandboxes: %w", err)
	}
	defer mgr.Close()
	reg.WatchStore(st)
	reg.WatchPools(mgr)
	reg.WatchImages(images)
	reg.WatchNetns(lrt)
	reg.WatchUsage(st, "sbx")

	url := "http://" + ln.Addr().String()
	ln, scheme, err := cfg.apiListener(ln, log)
	if err != nil {
		return err
	}
	url = scheme + "://" + ln.Addr().String()
	if cfg.LocalMode {
		if err := bootstrapLocal(ctx, st, cfg.CredentialsPath, url, socket, log); err != nil {
			return err
		}
	}

	// One Authenticator for the API, bulk transfers and the port proxy, so
	// that a key revoked through the AdminService stops working at once in
	// all three (its cache is per Authenticator).
	authn := auth.NewAuthenticator(st)
	prx, err := cfg.newProxy(mgr, authn, lrt, ln.Addr(), log)
	if err != nil {
		return err
	}
	defer prx.Close()
	proxyRef.Store(prx)
	calls := server.NewCallLimit(cfg.MaxCallsPerTenant)
	api := server.New(server.Config{
		Calls:          calls,
		Manager:        mgr,
		Auth:           authn,
		Store:          st,
		Admins:         cfg.admins(),
		Logger:         log,
		Interceptors:   []connect.Interceptor{reg.Interceptor()},
		Images:         images,
		ImageAdmins:    cfg.imageAdmins(),
		ImportDir:      cfg.importDir(),
		MaxImportBytes: cfg.MaxImportBytes,
		Proxy:          prx,
		Secrets:        secretMgr,
	})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", server.RequireAdmin(authn, cfg.admins(), reg.Handler()))
	mux.Handle("/", api)
	// Raw file transfers, beside the Connect RPCs (server/bulk.go).
	mux.Handle(server.BulkPrefix, server.NewBulk(server.Config{Manager: mgr, Auth: authn, Logger: log, Calls: calls}))
	// Published ports are routed by Host before anything else.
	srv := server.NewHTTPServer(cfg.Listen, prx.Wrap(mux))

	errc := make(chan error, 3)
	go func() { errc <- srv.Serve(ln) }()
	if uln != nil {
		go func() { errc <- srv.Serve(uln) }()
	}
	if mln != nil {
		// /metrics with no key, on an address the operator keeps private.
		msrv := &http.Server{Handler: privateMux(reg.Handler(), cfg.Pprof), ReadHeaderTimeout: 10 * time.Second}
		defer msrv.Close()
		go func() { errc <- msrv.Serve(mln) }()
	}
	log.Info("sbx serve ready", "url", url, "unix_socket", socket, "data_dir", cfg.DataDir, "runtime", cfg.Runtime, "runtime_binary", lrt.RuntimeBinary(), "network", cfg.Network, "cgroups", lrt.CgroupLayout().String(), "agent", agentPath)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down; sandboxes keep running")
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.ShutdownTimeout))
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown", "err", err)
	}
	// Streams (exec, logs follow) outlive Shutdown's wait; cut them.
	_ = srv.Close()
	// Sandboxes deleted before the shutdown leave the host before we exit.
	if err := mgr.DrainTeardowns(sctx); err != nil {
		log.Warn("shutdown: the next start finishes the teardowns", "err", err)
	}
	return nil
}

// findAgent returns the sbx-agent binary: the configured path, else next to
// the running executable, else in PATH.
func findAgent(configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "sbx-agent")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	if p, err := lookPath("sbx-agent"); err == nil {
		return p, nil
	}
	return "", errors.New("sbx-agent not found next to the sbx binary nor in PATH: build it (make build) or pass --agent-path")
}

// sweepHostCgroup2 frees what crun left in the host's memory under earlier
// versions of sbx (see local.SweepHostCgroup2).
func sweepHostCgroup2(log *slog.Logger) {
	start := time.Now()
	n, err := local.SweepHostCgroup2()
	if err != nil {
		log.Warn("remove crun's leftovers of earlier sbx versions under the host's cgroup2 mount point", "removed", n, "err", err)
		return
	}
	if n > 0 {
		log.Info("removed crun's leftovers of earlier sbx versions under the host's cgroup2 mount point (a directory and a 4 KiB file per sandbox ever run, in the host's memory)", "removed", n, "took", time.Since(start).Round(time.Millisecond))
	}
}
