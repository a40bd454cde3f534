// Package daemon wires sbx's packages into one server, `sbx serve`: it holds
// the server's configuration (defaults, validation, the YAML config file),
// opens the store, the image store, the runtime and the lifecycle manager,
// serves the API with /healthz and /metrics, creates the local tenant and
// API key on first start, and shuts down gracefully, leaving sandboxes
// running.
package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sbx-run/sbx/internal/image"
	"github.com/sbx-run/sbx/internal/lifecycle"
)

// DefaultListen is where `sbx serve` listens; it matches the SDK's DefaultURL.
const DefaultListen = "127.0.0.1:7420"

// DefaultDataDir holds the store, the image cache and the sandboxes.
const DefaultDataDir = "/var/lib/sbx"

// maxConfigFile bounds the config file we read.
const maxConfigFile = 1 << 20

// Config is the whole configuration of `sbx serve`. It is filled from
// Default, then the YAML config file (LoadFile), then flags; Validate checks
// it. Field names in the file are the JSON tags (camelCase).
type Config struct {
	// Listen is the TCP address of the API, /healthz and /metrics (for
	// admins).
	Listen string `json:"listen,omitempty"`
	// MetricsListen, when set, is a TCP address serving /metrics with no
	// key, for a scraper on a private network; /metrics on the API's
	// listeners always needs an admin tenant's key (the metrics name every
	// tenant).
	MetricsListen string `json:"metricsListen,omitempty"`
	// Pprof adds Go's profiler (/debug/pprof/) to MetricsListen (debug.go).
	Pprof bool `json:"pprof,omitempty"`
	// TLSCertFile and TLSKeyFile, when set, make the API's TCP listener
	// speak TLS (HTTP/2 and HTTP/1.1 by ALPN) with this PEM pair, reloaded
	// when the files change (tls.go); the Unix socket stays plain.
	TLSCertFile string `json:"tlsCertFile,omitempty"`
	TLSKeyFile  string `json:"tlsKeyFile,omitempty"`
	// ListenUnix is the API's Unix socket for clients on this machine
	// (unixsock.go): empty is <DataDir>/api.sock, "none" turns it off.
	ListenUnix string `json:"listenUnix,omitempty"`
	// DataDir holds sbx.db, images/ and sandboxes/.
	DataDir string `json:"dataDir,omitempty"`
	// StoreDSN selects the store: empty is SQLite at <DataDir>/sbx.db;
	// "postgres://..." is PostgreSQL.
	StoreDSN string `json:"storeDSN,omitempty"`
	// SecretsKeyFile holds the key (32 bytes, base64) that seals tenants'
	// secrets: empty is <DataDir>/secrets.key, created on first start.
	SecretsKeyFile string `json:"secretsKeyFile,omitempty"`
	// RegistryMirrors are "host=endpoint" pairs, e.g.
	// "docker.io=http://127.0.0.1:5000"; several for one host are tried in order.
	RegistryMirrors []string `json:"registryMirrors,omitempty"`
	// InsecureRegistries are hosts (host[:port]) reached over plain HTTP.
	InsecureRegistries []string `json:"insecureRegistries,omitempty"`
	// AllowedRegistries, when set, are the only registry hosts (mirrors
	// included) the server may pull from; empty allows every registry.
	AllowedRegistries []string `json:"allowedRegistries,omitempty"`
	// RegistryAuth maps a registry host to its credentials.
	RegistryAuth map[string]RegistryCredentials `json:"registryAuth,omitempty"`
	// Runtime is the OCI runtime: crun, runc or runsc.
	Runtime string `json:"runtime,omitempty"`
	// RuntimePath is the runtime's binary; empty uses sbx's static build
	// in /usr/local/libexec/sbx when there (scripts/build-crun.sh), else PATH.
	RuntimePath string `json:"runtimePath,omitempty"`
	// AgentPath is the static sbx-agent; empty looks next to the sbx
	// executable, then in PATH.
	AgentPath string `json:"agentPath,omitempty"`

	// Default resources of a sandbox that asks for none.
	DefaultCPUMillis   int64 `json:"defaultCPUMillis,omitempty"`
	DefaultMemoryBytes int64 `json:"defaultMemoryBytes,omitempty"`
	DefaultPids        int64 `json:"defaultPids,omitempty"`
	// DiskLimits is "on" (each sandbox's writable layer is a btrfs
	// subvolume in the disk pool, limited to its disk_bytes) or "off"
	// (unbounded; a create with disk_bytes is refused). See disk.go.
	DiskLimits string `json:"diskLimits,omitempty"`
	// UserNS is "auto" (each crun or runc sandbox in a user namespace of
	// its own, whose root is an unprivileged host uid, where the kernel
	// can; else without), "on" (required: the server refuses to start
	// where it cannot) or "off" (sandbox root is host root). runsc never
	// uses one of ours. See internal/runtime/local/userns.go.
	UserNS string `json:"userns,omitempty"`
	// DefaultDiskBytes is the disk limit of a sandbox that asks for none;
	// MaxDiskBytes the largest one may ask for.
	DefaultDiskBytes int64 `json:"defaultDiskBytes,omitempty"`
	MaxDiskBytes     int64 `json:"maxDiskBytes,omitempty"`
	// DiskPoolBytes is the size of the pool image <DataDir>/disk.img when
	// it is made (0: half the data dir's free space, 1 GiB..16 TiB); it
	// bounds the disk of all sandboxes together. Unused when the data dir
	// is on btrfs.
	DiskPoolBytes int64 `json:"diskPoolBytes,omitempty"`
	// DiskReserveBytes is the free space kept on the data dir's filesystem
	// under an image-backed pool: below it creates are refused and
	// sandboxes' disks are frozen at their size (0: 256 MiB, -1: off).
	DiskReserveBytes int64 `json:"diskReserveBytes,omitempty"`

	// DefaultLifetime and MaxLifetime bound max_lifetime_seconds.
	DefaultLifetime Duration `json:"defaultLifetime,omitempty"`
	MaxLifetime     Duration `json:"maxLifetime,omitempty"`
	// Retention is how long terminal sandboxes stay listable.
	Retention Duration `json:"retention,omitempty"`
	// LifetimeBackstop is how long after its lifetime a sandbox's agent
	// ends it by itself if no server stopped it, e.g. while sbx serve is
	// down (0: 1 min; negative: off). See internal/lifecycle/backstop.go.
	LifetimeBackstop Duration `json:"lifetimeBackstop,omitempty"`
	// MaxSandboxesPerTenant is the default quota of concurrent sandboxes.
	MaxSandboxesPerTenant int `json:"maxSandboxesPerTenant,omitempty"`
	// MaxConcurrentCreates and CreateQueue are the admission control of
	// creates (0: 3 per 2 CPUs, and as many again queued); beyond both,
	// Create answers RESOURCE_EXHAUSTED with a retry delay.
	MaxConcurrentCreates int `json:"maxConcurrentCreates,omitempty"`
	CreateQueue          int `json:"createQueue,omitempty"`
	// CreateLatencyTarget also bounds the create queue by time (0: 1 s;
	// negative: off): a cold create is queued only while it is expected
	// to be created within it. TeardownParallel bounds the background
	// teardowns of deleted sandboxes (0: 1 per CPU).
	CreateLatencyTarget Duration `json:"createLatencyTarget,omitempty"`
	TeardownParallel    int      `json:"teardownParallel,omitempty"`
	// DefaultLease and MaxLease bound session leases.
	DefaultLease Duration `json:"defaultLease,omitempty"`
	MaxLease     Duration `json:"maxLease,omitempty"`

	// LocalMode creates one tenant and API key on first start, prints the
	// key and writes it to CredentialsPath.
	LocalMode bool `json:"localMode,omitempty"`
	// CredentialsPath is where local mode writes the URL and key; empty is
	// the SDK's DefaultCredentialsPath.
	CredentialsPath string `json:"credentialsPath,omitempty"`

	// ImageAdmins are the tenant ids that may remove, import and
	// garbage-collect images, which every tenant shares (any tenant may
	// pull and list). In local mode the local tenant is always one.
	ImageAdmins []string `json:"imageAdmins,omitempty"`
	// Admins are the tenant ids that may create tenants and manage every
	// tenant's API keys (the AdminService); they are image admins too. In
	// local mode the local tenant is always one.
	Admins []string `json:"admins,omitempty"`
	// MaxImportBytes bounds one image tarball sent to ImageService.Import;
	// it is spooled to <DataDir>/import first.
	MaxImportBytes int64 `json:"maxImportBytes,omitempty"`
	// MaxImageBytes bounds every image the server pulls or imports: its
	// layers' compressed sizes and the content they unpack to.
	MaxImageBytes int64 `json:"maxImageBytes,omitempty"`
	// MaxCallsPerTenant bounds the API calls (exec streams, waits, log
	// follows, file transfers, ...) one tenant has in flight at once.
	MaxCallsPerTenant int `json:"maxCallsPerTenant,omitempty"`
	// MaxConnections bounds the API connections served at once (0: half
	// of the process's open-file limit); past it new ones wait.
	MaxConnections int `json:"maxConnections,omitempty"`

	// Network is "bridge" (the default: each sandbox gets an address on a
	// bridge, NAT and its network policy; see internal/network) or "none"
	// (sandboxes have loopback only).
	Network string `json:"network,omitempty"`
	// NetworkBridge and NetworkSubnet name the bridge and the sandboxes'
	// private IPv4 subnet (defaults sbx0 and 10.203.0.0/16).
	NetworkBridge string `json:"networkBridge,omitempty"`
	NetworkSubnet string `json:"networkSubnet,omitempty"`
	// NetworkTable names sbx's nftables tables (default sbx). Two servers
	// on one host need their own bridge, subnet and table each; the server
	// locks bridge and table at start so that a second one fails at once.
	NetworkTable string `json:"networkTable,omitempty"`
	// NetworkDNS, when set, are the resolvers sandboxes query instead of
	// sbx's own (in their /etc/resolv.conf; reachable on port 53 only).
	// sbx then runs no resolver, so a policy with allow_names is rejected
	// at create. Empty (the default): sbx's resolver on the gateway.
	NetworkDNS []string `json:"networkDNS,omitempty"`
	// NetworkDNSUpstream are the resolvers sbx's resolver forwards to, as
	// IP or IP:port; they are queried from the host, so 127.0.0.53 works.
	// Empty takes the nameservers of the host's /etc/resolv.conf.
	NetworkDNSUpstream []string `json:"networkDNSUpstream,omitempty"`

	// ProxyDomain is the base domain of published ports' host-form URLs,
	// http://<port>-<sandbox-id>.<domain>/ (default localhost); its
	// wildcard must resolve to this server.
	ProxyDomain string `json:"proxyDomain,omitempty"`
	// PublicURL is the API's URL as users reach it (the base of path-form
	// port URLs; default from Listen, with 0.0.0.0 and [::] as localhost).
	PublicURL string `json:"publicURL,omitempty"`

	// Pools are the warm pools: sandboxes kept created and idle per image
	// and resources, so that a matching create only applies its request.
	Pools []PoolConfig `json:"pools,omitempty"`

	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"logLevel,omitempty"`
	// ShutdownTimeout bounds the graceful shutdown of in-flight requests.
	ShutdownTimeout Duration `json:"shutdownTimeout,omitempty"`
}

// RegistryCredentials authenticate to one private registry.
type RegistryCredentials struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Token    string `json:"token,omitempty"`
}

// Default returns the embedded defaults: everything `sbx serve` needs to
// run on one machine with no flags.
func Default() Config {
	return Config{
		Listen:                DefaultListen,
		DataDir:               DefaultDataDir,
		Runtime:               "crun",
		Network:               "bridge",
		ProxyDomain:           "localhost",
		DefaultCPUMillis:      1000,
		DefaultMemoryBytes:    1 << 30,
		DefaultPids:           4096,
		DiskLimits:            "on",
		UserNS:                "auto",
		DefaultDiskBytes:      defaultDiskBytes,
		MaxDiskBytes:          defaultMaxDisk,
		DefaultLifetime:       Duration(600 * time.Second),
		MaxLifetime:           Duration(24 * time.Hour),
		Retention:             Duration(24 * time.Hour),
		MaxSandboxesPerTenant: 100,
		DefaultLease:          Duration(60 * time.Second),
		MaxLease:              Duration(time.Hour),
		LocalMode:             true,
		MaxImportBytes:        8 << 30,
		MaxImageBytes:         32 << 30,
		MaxCallsPerTenant:     4096,
		LogLevel:              "info",
		ShutdownTimeout:       Duration(10 * time.Second),
	}
}

// LoadFile reads a YAML (or JSON) config file over c: fields present in the
// file replace c's; unknown fields are an error, so typos do not pass
// silently.
func (c *Config) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if len(b) > maxConfigFile {
		return fmt.Errorf("config file %s is larger than %d bytes", path, maxConfigFile)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return fmt.Errorf("config file %s is not valid YAML: %w", path, err)
	}
	if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
		return nil // empty file
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("config file %s: %w (field names are listed in the configuration reference)", path, err)
	}
	return nil
}

// Validate checks every field and says what to change.
func (c *Config) Validate() error {
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return fmt.Errorf("metricsListen %q is not host:port: %w", c.MetricsListen, err)
		}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q is not host:port: %w", c.Listen, err)
	}
	if !filepath.IsAbs(c.DataDir) {
		return fmt.Errorf("data dir %q must be an absolute path", c.DataDir)
	}
	if err := c.validateUnix(); err != nil {
		return err
	}
	// The runtime keeps agent sockets under <data-dir>/sandboxes, and Unix
	// socket paths are short.
	if len(filepath.Clean(c.DataDir)) > 56 {
		return fmt.Errorf("data dir %q is longer than 56 bytes: agent socket paths under it would not fit a Unix socket address; choose a shorter one", c.DataDir)
	}
	if c.StoreDSN != "" && !strings.HasPrefix(c.StoreDSN, "postgres://") && !strings.HasPrefix(c.StoreDSN, "postgresql://") {
		return fmt.Errorf("store DSN must be empty (SQLite in the data dir) or start with postgres://")
	}
	if _, err := c.Mirrors(); err != nil {
		return err
	}
	for _, h := range c.InsecureRegistries {
		if h == "" || strings.ContainsAny(h, "/ ") {
			return fmt.Errorf("insecure registry %q must be a host or host:port", h)
		}
	}
	for _, h := range c.AllowedRegistries {
		if h == "" || strings.ContainsAny(h, "/ ") {
			return fmt.Errorf("allowed registry %q must be a host or host:port", h)
		}
	}
	switch c.Runtime {
	case "crun", "runc", "runsc":
	default:
		return fmt.Errorf("runtime %q is not supported: use crun, runc or runsc", c.Runtime)
	}
	switch c.UserNS {
	case "", "auto", "on", "off":
	default:
		return fmt.Errorf("userns %q is invalid: use auto, on or off", c.UserNS)
	}
	if err := c.validateNetwork(); err != nil {
		return err
	}
	if err := c.validateProxy(); err != nil {
		return err
	}
	switch {
	case c.DefaultCPUMillis < 1 || c.DefaultCPUMillis > 256_000:
		return fmt.Errorf("default CPU %d millicores is out of range 1..256000", c.DefaultCPUMillis)
	case c.DefaultMemoryBytes < 16<<20 || c.DefaultMemoryBytes > 1<<40:
		return fmt.Errorf("default memory %d bytes is out of range 16 MiB..1 TiB", c.DefaultMemoryBytes)
	case c.DefaultPids < 8 || c.DefaultPids > 1<<22:
		return fmt.Errorf("default pids %d is out of range 8..4194304", c.DefaultPids)
	case c.MaxLifetime < Duration(time.Second):
		return fmt.Errorf("max lifetime %s must be at least 1s", c.MaxLifetime)
	case c.DefaultLifetime < Duration(time.Second) || c.DefaultLifetime > c.MaxLifetime:
		return fmt.Errorf("default lifetime %s must be between 1s and the max lifetime %s", c.DefaultLifetime, c.MaxLifetime)
	case c.Retention < 0:
		return fmt.Errorf("retention %s must not be negative", c.Retention)
	case c.LifetimeBackstop > Duration(lifecycle.MaxLifetimeBackstop):
		return fmt.Errorf("lifetime backstop %s must be at most %s (0: the default; negative: off)", c.LifetimeBackstop, time.Duration(lifecycle.MaxLifetimeBackstop))
	case c.MaxSandboxesPerTenant < 1 || c.MaxSandboxesPerTenant > 100_000:
		return fmt.Errorf("max sandboxes per tenant %d is out of range 1..100000", c.MaxSandboxesPerTenant)
	case c.DefaultLease < Duration(time.Second) || c.DefaultLease > c.MaxLease:
		return fmt.Errorf("default lease %s must be between 1s and the max lease %s", c.DefaultLease, c.MaxLease)
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("shutdown timeout %s must not be negative", c.ShutdownTimeout)
	}
	if c.Pprof && c.MetricsListen == "" {
		return fmt.Errorf("pprof is served on the private --metrics-listen address only: give --metrics-listen too")
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	if err := c.validateDisk(); err != nil {
		return err
	}
	if c.MaxImportBytes < 1<<20 || c.MaxImportBytes > 1<<40 {
		return fmt.Errorf("max import bytes %d is out of range 1 MiB..1 TiB", c.MaxImportBytes)
	}
	if c.MaxImageBytes < 1<<20 || c.MaxImageBytes > 1<<44 {
		return fmt.Errorf("maxImageBytes %d is out of range 1 MiB..16 TiB", c.MaxImageBytes)
	}
	if c.MaxCallsPerTenant < 1 || c.MaxCallsPerTenant > 1<<20 {
		return fmt.Errorf("maxCallsPerTenant %d is out of range 1..1048576", c.MaxCallsPerTenant)
	}
	if c.MaxConnections < 0 || c.MaxConnections > 1<<20 {
		return fmt.Errorf("maxConnections %d is out of range 0 (half the open-file limit)..1048576", c.MaxConnections)
	}
	for _, t := range c.ImageAdmins {
		if !tenantIDRE.MatchString(t) {
			return fmt.Errorf("image admin %q is not a tenant id (1-128 of [A-Za-z0-9_.-])", t)
		}
	}
	for _, t := range c.Admins {
		if !tenantIDRE.MatchString(t) {
			return fmt.Errorf("admin %q is not a tenant id (1-128 of [A-Za-z0-9_.-])", t)
		}
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	return c.validatePools()
}

var tenantIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// imageAdmins returns the tenants that may change the shared image cache:
// ImageAdmins and the admins.
func (c *Config) imageAdmins() []string {
	admins := slices.Clone(c.ImageAdmins)
	for _, t := range c.admins() {
		if !slices.Contains(admins, t) {
			admins = append(admins, t)
		}
	}
	return admins
}

// admins returns the tenants that may manage tenants and API keys:
// Admins, plus the local tenant in local mode.
func (c *Config) admins() []string {
	admins := slices.Clone(c.Admins)
	if c.LocalMode && !slices.Contains(admins, LocalTenant) {
		admins = append(admins, LocalTenant)
	}
	return admins
}

// importDir is where image imports are spooled: in the data dir, on the
// same disk as the image store, never in a small tmpfs.
func (c *Config) importDir() string { return filepath.Join(c.DataDir, "import") }

// Mirrors parses RegistryMirrors into the image store's form.
func (c *Config) Mirrors() (map[string][]string, error) {
	out := map[string][]string{}
	for _, m := range c.RegistryMirrors {
		host, ep, ok := strings.Cut(m, "=")
		if !ok || host == "" || ep == "" {
			return nil, fmt.Errorf("registry mirror %q must be host=endpoint, e.g. docker.io=http://127.0.0.1:5000", m)
		}
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("registry mirror %q: endpoint must be http://host[:port] or https://host[:port]", m)
		}
		out[host] = append(out[host], ep)
	}
	return out, nil
}

func (c *Config) imageConfig() (image.Config, error) {
	mirrors, err := c.Mirrors()
	if err != nil {
		return image.Config{}, err
	}
	auth := map[string]image.Credentials{}
	for h, a := range c.RegistryAuth {
		auth[h] = image.Credentials{Username: a.Username, Password: a.Password, Token: a.Token}
	}
	return image.Config{
		Root:              filepath.Join(c.DataDir, "images"),
		Mirrors:           mirrors,
		Insecure:          c.InsecureRegistries,
		Auth:              auth,
		AllowedRegistries: c.AllowedRegistries,
		MaxImageBytes:     c.MaxImageBytes,
	}, nil
}

// Duration is a time.Duration written as "90s" or "24h" in the config file.
type Duration time.Duration

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads "90s" (or a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err2 := json.Unmarshal(b, &secs); err2 != nil {
			return fmt.Errorf("duration %s must be a string like \"90s\" or a number of seconds", b)
		}
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}
