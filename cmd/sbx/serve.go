package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sbx-run/sbx/internal/daemon"
)

func init() { commands = append(commands, newServeCmd) }

// newServeCmd is `sbx serve`: flags over the config file over the embedded
// defaults, parsed into one daemon.Config, then daemon.Run.
func newServeCmd() *cobra.Command {
	def := daemon.Default()
	f := def // flag values; only the flags set on the command line are used
	var configPath string
	var lifetime, maxLifetime, retention, backstop, createLatency time.Duration
	var pools []string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the sbx server (API, lifecycle, store) on this machine",
		Long: "serve runs the sbx server with its embedded defaults: SQLite in the data dir, the local\n" +
			"OCI runtime, and in local mode one tenant whose API key is printed on first start and\n" +
			"written to the credentials file the CLI and SDK read. Flags override --config.",
		Args: exactArgs(0, "no arguments"),
	}
	fs := c.Flags()
	fs.StringVar(&configPath, "config", "", "YAML config file (flags override it)")
	fs.StringVar(&f.Listen, "listen", def.Listen, "address of the API, /healthz and /metrics (for admins)")
	fs.BoolVar(&f.Pprof, "pprof", false, "also serve Go's profiler (/debug/pprof/) on the --metrics-listen address")
	fs.StringVar(&f.TLSCertFile, "tls-cert", "", "PEM certificate (chain) for TLS on the API's TCP listener, reloaded when the file changes; needs --tls-key (the Unix socket stays plain)")
	fs.StringVar(&f.TLSKeyFile, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.MetricsListen, "metrics-listen", "", "also serve /metrics with no key on this host:port, for a scraper on a private network (on the API's listeners /metrics needs an admin's key)")
	fs.StringVar(&f.ListenUnix, "listen-unix", "", "Unix socket of the same API for clients on this machine (default <data-dir>/api.sock; none: TCP only)")
	fs.StringVar(&f.DataDir, "data-dir", def.DataDir, "directory of the store, image cache and sandboxes")
	fs.StringVar(&f.StoreDSN, "store-dsn", "", "postgres://... to use PostgreSQL instead of SQLite in the data dir")
	fs.StringVar(&f.SecretsKeyFile, "secrets-key-file", "", "file holding the key (32 bytes, base64) that encrypts tenants' secrets (default <data-dir>/secrets.key, created on first start; give every replica the same one)")
	fs.StringArrayVar(&f.RegistryMirrors, "registry-mirror", nil, "host=endpoint registry mirror, e.g. docker.io=http://127.0.0.1:5000 (repeatable)")
	fs.StringArrayVar(&f.InsecureRegistries, "insecure-registry", nil, "registry host[:port] reached over plain HTTP (repeatable)")
	fs.StringArrayVar(&f.AllowedRegistries, "allowed-registry", nil, "the only registry hosts (mirrors included) to pull from (repeatable; default: any)")
	fs.StringVar(&f.Runtime, "runtime", def.Runtime, "OCI runtime: crun, runc or runsc")
	fs.StringVar(&f.RuntimePath, "runtime-path", "", "OCI runtime binary (default: sbx's static build in /usr/local/libexec/sbx if there, else looked up in PATH)")
	fs.StringVar(&f.Network, "network", def.Network, "sandbox networking: bridge (own address, NAT, egress policy) or none (loopback only)")
	fs.StringVar(&f.NetworkBridge, "network-bridge", "", "bridge of the sandboxes' network (default sbx0)")
	fs.StringVar(&f.NetworkSubnet, "network-subnet", "", "private IPv4 subnet of the sandboxes (default 10.203.0.0/16)")
	fs.StringVar(&f.NetworkTable, "network-table", "", "name of sbx's nftables tables (default sbx); each server on a host needs its own bridge, subnet and table")
	fs.StringVar(&f.ProxyDomain, "proxy-domain", def.ProxyDomain, "base domain of published ports' URLs, http://<port>-<sandbox-id>.<domain>/; *.<domain> must resolve to this server")
	fs.StringVar(&f.PublicURL, "public-url", "", "the API's URL as users reach it, the base of path-form port URLs (default from --listen)")
	fs.StringArrayVar(&f.NetworkDNSUpstream, "network-dns-upstream", nil, "resolver (IP or IP:port) that sbx's sandbox DNS resolver forwards to, queried from the host (repeatable; default: /etc/resolv.conf's)")
	fs.StringVar(&f.AgentPath, "agent-path", "", "static sbx-agent binary (default: next to sbx, then PATH)")
	fs.Int64Var(&f.DefaultCPUMillis, "default-cpu-millis", def.DefaultCPUMillis, "default CPU limit of a sandbox, in millicores")
	fs.Int64Var(&f.DefaultMemoryBytes, "default-memory-bytes", def.DefaultMemoryBytes, "default memory limit of a sandbox, in bytes")
	fs.Int64Var(&f.DefaultPids, "default-pids", def.DefaultPids, "default process limit of a sandbox")
	fs.StringVar(&f.DiskLimits, "disk-limits", def.DiskLimits, "per-sandbox disk limits: on (each sandbox's writable filesystem is a size-limited btrfs subvolume; needs btrfs) or off (unbounded)")
	fs.StringVar(&f.UserNS, "userns", def.UserNS, "user namespaces under crun and runc: auto (each sandbox's root is an unprivileged host uid of a range of its own, where the kernel can), on (required: refuse to start where not possible) or off (sandbox root is host root)")
	fs.Int64Var(&f.DefaultDiskBytes, "default-disk-bytes", def.DefaultDiskBytes, "default disk limit of a sandbox, in bytes")
	fs.Int64Var(&f.MaxDiskBytes, "max-disk-bytes", def.MaxDiskBytes, "largest disk limit a sandbox may ask for, in bytes")
	fs.Int64Var(&f.DiskPoolBytes, "disk-pool-bytes", 0, "size of the btrfs pool image <data-dir>/disk.img when it is made, bounding all sandboxes' disk together (0: half the free space); unused when the data dir is on btrfs")
	fs.Int64Var(&f.DiskReserveBytes, "disk-reserve-bytes", 0, "free space kept on the data dir's filesystem under the pool image: below it creates are refused (DISK_POOL_FULL) and sandboxes' disks are frozen at their size until space is back (0: 256 MiB, -1: off)")
	fs.DurationVar(&lifetime, "default-lifetime", time.Duration(def.DefaultLifetime), "lifetime of a sandbox that asks for none")
	fs.DurationVar(&maxLifetime, "max-lifetime", time.Duration(def.MaxLifetime), "longest lifetime a sandbox may ask for")
	fs.DurationVar(&retention, "retention", time.Duration(def.Retention), "how long ended sandboxes stay listable")
	fs.DurationVar(&backstop, "lifetime-backstop", 0, "how long after its lifetime a sandbox's own agent ends it if no server did, e.g. while sbx serve is down (0: 1m; negative: off)")
	fs.IntVar(&f.MaxSandboxesPerTenant, "max-sandboxes-per-tenant", def.MaxSandboxesPerTenant, "default quota of concurrent sandboxes per tenant")
	fs.IntVar(&f.MaxConcurrentCreates, "max-concurrent-creates", def.MaxConcurrentCreates, "creates the runtime works on at once (0: 3 per 2 CPUs); more wait in the create queue")
	fs.IntVar(&f.CreateQueue, "create-queue", def.CreateQueue, "accepted creates that may wait for a free create slot (0: as many as --max-concurrent-creates); beyond it Create answers RESOURCE_EXHAUSTED with a retry delay")
	fs.DurationVar(&createLatency, "create-latency-target", time.Duration(def.CreateLatencyTarget), "queue a cold create only while it is expected to be created within this time (0: 1s; negative: no time bound); others get RESOURCE_EXHAUSTED with a retry delay")
	fs.IntVar(&f.TeardownParallel, "teardown-parallel", def.TeardownParallel, "teardowns of deleted sandboxes run in the background at once (0: 1 per CPU)")
	fs.BoolVar(&f.LocalMode, "local", def.LocalMode, "create one tenant and API key on first start and write it to the credentials file")
	fs.StringArrayVar(&f.Admins, "admin", nil, "tenant id that may create tenants and manage every tenant's API keys, and is an image admin (repeatable; in local mode the local tenant is always one)")
	fs.StringVar(&f.CredentialsPath, "credentials-path", "", "where local mode writes the URL and API key (default $SBX_CONFIG_DIR/credentials or ~/.config/sbx/credentials)")
	fs.StringVar(&f.LogLevel, "log-level", def.LogLevel, "debug, info, warn or error")
	fs.StringArrayVar(&pools, "pool", nil, "warm pool IMAGE=MIN_IDLE[:MAX], e.g. busybox:1.36=4:8 (repeatable; replaces the config file's pools)")

	c.RunE = func(cmd *cobra.Command, _ []string) error {
		f.DefaultLifetime, f.MaxLifetime, f.Retention = daemon.Duration(lifetime), daemon.Duration(maxLifetime), daemon.Duration(retention)
		f.LifetimeBackstop = daemon.Duration(backstop)
		f.CreateLatencyTarget = daemon.Duration(createLatency)
		cfg := daemon.Default()
		if configPath != "" {
			if err := cfg.LoadFile(configPath); err != nil {
				return usageErrorf("%v", err)
			}
		}
		fs.Visit(func(fl *pflag.Flag) { overrideFromFlag(&cfg, &f, fl.Name) })
		if fs.Changed("pool") {
			cfg.Pools = nil
			for _, v := range pools {
				p, err := daemon.ParsePoolFlag(v)
				if err != nil {
					return usageErrorf("--pool: %v", err)
				}
				cfg.Pools = append(cfg.Pools, p)
			}
		}
		if err := cfg.Validate(); err != nil {
			return usageErrorf("%v", err)
		}
		err := daemon.Run(cmd.Context(), cfg)
		var code daemon.ExitCode
		if errors.As(err, &code) {
			return exitCode(int(code))
		}
		return err
	}
	return c
}

// overrideFromFlag copies the field of flag name from f to cfg.
func overrideFromFlag(cfg, f *daemon.Config, name string) {
	switch name {
	case "listen":
		cfg.Listen = f.Listen
	case "listen-unix":
		cfg.ListenUnix = f.ListenUnix
	case "metrics-listen":
		cfg.MetricsListen = f.MetricsListen
	case "data-dir":
		cfg.DataDir = f.DataDir
	case "store-dsn":
		cfg.StoreDSN = f.StoreDSN
	case "admin":
		cfg.Admins = f.Admins
	case "secrets-key-file":
		cfg.SecretsKeyFile = f.SecretsKeyFile
	case "registry-mirror":
		cfg.RegistryMirrors = f.RegistryMirrors
	case "insecure-registry":
		cfg.InsecureRegistries = f.InsecureRegistries
	case "allowed-registry":
		cfg.AllowedRegistries = f.AllowedRegistries
	case "runtime":
		cfg.Runtime = f.Runtime
	case "runtime-path":
		cfg.RuntimePath = f.RuntimePath
	case "network":
		cfg.Network = f.Network
	case "network-bridge":
		cfg.NetworkBridge = f.NetworkBridge
	case "network-subnet":
		cfg.NetworkSubnet = f.NetworkSubnet
	case "network-table":
		cfg.NetworkTable = f.NetworkTable
	case "proxy-domain":
		cfg.ProxyDomain = f.ProxyDomain
	case "public-url":
		cfg.PublicURL = f.PublicURL
	case "network-dns-upstream":
		cfg.NetworkDNSUpstream = f.NetworkDNSUpstream
	case "agent-path":
		cfg.AgentPath = f.AgentPath
	case "default-cpu-millis":
		cfg.DefaultCPUMillis = f.DefaultCPUMillis
	case "default-memory-bytes":
		cfg.DefaultMemoryBytes = f.DefaultMemoryBytes
	case "default-pids":
		cfg.DefaultPids = f.DefaultPids
	case "disk-limits":
		cfg.DiskLimits = f.DiskLimits
	case "userns":
		cfg.UserNS = f.UserNS
	case "default-disk-bytes":
		cfg.DefaultDiskBytes = f.DefaultDiskBytes
	case "max-disk-bytes":
		cfg.MaxDiskBytes = f.MaxDiskBytes
	case "disk-pool-bytes":
		cfg.DiskPoolBytes = f.DiskPoolBytes
	case "pprof":
		cfg.Pprof = f.Pprof
	case "tls-cert":
		cfg.TLSCertFile = f.TLSCertFile
	case "tls-key":
		cfg.TLSKeyFile = f.TLSKeyFile
	case "disk-reserve-bytes":
		cfg.DiskReserveBytes = f.DiskReserveBytes
	case "default-lifetime":
		cfg.DefaultLifetime = f.DefaultLifetime
	case "max-lifetime":
		cfg.MaxLifetime = f.MaxLifetime
	case "retention":
		cfg.Retention = f.Retention
	case "lifetime-backstop":
		cfg.LifetimeBackstop = f.LifetimeBackstop
	case "max-sandboxes-per-tenant":
		cfg.MaxSandboxesPerTenant = f.MaxSandboxesPerTenant
	case "max-concurrent-creates":
		cfg.MaxConcurrentCreates = f.MaxConcurrentCreates
	case "create-queue":
		cfg.CreateQueue = f.CreateQueue
	case "create-latency-target":
		cfg.CreateLatencyTarget = f.CreateLatencyTarget
	case "teardown-parallel":
		cfg.TeardownParallel = f.TeardownParallel
	case "local":
		cfg.LocalMode = f.LocalMode
	case "credentials-path":
		cfg.CredentialsPath = f.CredentialsPath
	case "log-level":
		cfg.LogLevel = f.LogLevel
	}
}
