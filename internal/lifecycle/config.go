package lifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Config holds the manager's limits and timings. Zero fields take the
// defaults noted on each.
type Config struct {
	// DefaultImage is used when neither request nor session names one
	// (sandbox.DefaultImage).
	DefaultImage string
	// DefaultLifetime applies when a request leaves max_lifetime unset (600 s).
	DefaultLifetime time.Duration
	// MaxLifetime is the longest lifetime a request may ask for (24 h).
	MaxLifetime time.Duration
	// Retention is how long terminal records stay listable (24 h).
	Retention time.Duration
	// MaxSandboxesPerTenant is the default quota of concurrent non-terminal
	// sandboxes per tenant, when the tenant sets none (100).
	MaxSandboxesPerTenant int
	// MaxDiskBytes is the largest resources.disk_bytes a request may ask
	// for; 0 means the runtime has no disk limits, and any is refused.
	MaxDiskBytes int64
	// QuotaRetryAfter is the retry delay returned with QUOTA_EXCEEDED (5 s).
	QuotaRetryAfter time.Duration
	// DefaultLease and MaxLease bound session leases (60 s and 1 h).
	DefaultLease, MaxLease time.Duration
	// StopGrace is the default SIGTERM-to-SIGKILL grace of Stop (10 s).
	StopGrace time.Duration
	// CreateTimeout bounds Runtime.Create plus Runtime.Start (5 min), so a
	// hung pull cannot hold a sandbox in CREATING forever.
	CreateTimeout time.Duration
	// Linger is how long a terminal sandbox's container is kept (stopped)
	// before it is deleted, so its logs can still be read (60 s).
	Linger time.Duration
	// SweepInterval is how often lifetimes and leases are checked (1 s).
	SweepInterval time.Duration
	// LifetimeBackstop is how long after its ExpiresAt a sandbox's agent
	// ends the sandbox by itself when no server stopped it, e.g. because
	// the server is down (DefaultLifetimeBackstop; negative turns the
	// backstop off). See backstop.go.
	LifetimeBackstop time.Duration
	// SafetySweepInterval is how often the lifetime schedule is re-read
	// in full from the store (1 min): it picks up the sandboxes that other
	// server replicas created, and any stop that failed (sweep.go).
	SafetySweepInterval time.Duration
	// PurgeInterval is how often expired terminal records are purged (1 min).
	PurgeInterval time.Duration
	// MaxConcurrentCreates bounds the runtime creates in flight (3 per
	// CPU: a create also waits, for the OCI runtime and the agent's start,
	// so a few more than the CPUs keep them busy); CreateQueue is how many
	// more accepted creates may wait for one (MaxConcurrentCreates, so an
	// accepted create waits at most about one create's time). Beyond both,
	// Create answers RESOURCE_EXHAUSTED CREATE_QUEUE_FULL with a retry
	// delay (admission.go).
	MaxConcurrentCreates, CreateQueue int
	// CreateLatencyTarget bounds the queue by time as well (1 s): a cold
	// create is accepted only while the expected time from acceptance to
	// the end of its runtime create (the creates queued ahead drain at
	// MaxConcurrentCreates per mean create time, plus its own) is within
	// it, or a slot is free. Negative turns the bound off.
	CreateLatencyTarget time.Duration
	// TeardownParallel bounds the runtime teardowns of deleted and
	// released sandboxes that run at once (1 per CPU; 1 while accepted
	// creates wait for a slot). See teardown.go.
	TeardownParallel int
	// NoNameResolver says the sandboxes' DNS is not sbx's own resolver
	// (serve's networkDNS names others), so nothing could enforce a name
	// allow-list: Create and session defaults with allow_names are then
	// refused up front instead of failing at start.
	NoNameResolver bool
	// Pools are the warm pools (see pool.go); none by default.
	Pools []PoolConfig
	// PoolBackoff and PoolMaxBackoff bound the exponential back-off of a
	// pool whose refills fail (1 s and 5 min).
	PoolBackoff, PoolMaxBackoff time.Duration
	// PoolCheckInterval is how often idle pool sandboxes are checked to
	// still run (10 s).
	PoolCheckInterval time.Duration
	// Park, when set, stops everything in a sandbox from running at once
	// and cheaply (the local runtime freezes its cgroups), ahead of its
	// teardown; it reports whether it did. Delete parks an idle sandbox,
	// whose teardown may then wait until creates pause (teardown.go). The
	// runtime's Delete must remove a parked sandbox like any other, also
	// after a restart.
	Park func(ctx context.Context, id string) (bool, error)
	// OnStopping, when set, is called when a sandbox moves to TERMINATING
	// or a terminal state (e.g. to close connections into it). It must
	// not block.
	OnStopping func(id string)
	// OnPoolRefill, when set, is called after every refill attempt of a
	// pool with its key, duration and error (for metrics).
	OnPoolRefill func(pool string, d time.Duration, err error)
	// OnTeardown, when set, is called after every queued runtime teardown
	// (teardown.go) with the duration of its Runtime.Delete and its error
	// (nil for a sandbox already gone), for metrics. It must not block.
	OnTeardown func(d time.Duration, err error)
	// Secrets resolves the secrets a Create names; nil means the server
	// has no secret store (such creates fail with SECRETS_UNAVAILABLE).
	Secrets SecretResolver
	// Logger receives the manager's structured logs (slog.Default()).
	Logger *slog.Logger
	// Now is the clock (time.Now); tests may replace it.
	Now func() time.Time
}

// MaxCreateLimit bounds Config.MaxConcurrentCreates and Config.CreateQueue.
const MaxCreateLimit = 10_000

func (c Config) withDefaults() Config {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.DefaultImage == "" {
		c.DefaultImage = sandbox.DefaultImage
	}
	set(&c.DefaultLifetime, 600*time.Second)
	set(&c.MaxLifetime, 24*time.Hour)
	set(&c.Retention, 24*time.Hour)
	if c.MaxSandboxesPerTenant == 0 {
		c.MaxSandboxesPerTenant = 100
	}
	set(&c.QuotaRetryAfter, 5*time.Second)
	set(&c.DefaultLease, 60*time.Second)
	set(&c.MaxLease, time.Hour)
	set(&c.StopGrace, 10*time.Second)
	set(&c.CreateTimeout, 5*time.Minute)
	set(&c.Linger, 60*time.Second)
	set(&c.SweepInterval, time.Second)
	set(&c.LifetimeBackstop, DefaultLifetimeBackstop)
	set(&c.SafetySweepInterval, time.Minute)
	set(&c.PurgeInterval, time.Minute)
	if c.MaxConcurrentCreates == 0 {
		c.MaxConcurrentCreates = defaultConcurrentCreates(runtime.NumCPU())
	}
	if c.CreateQueue == 0 {
		c.CreateQueue = c.MaxConcurrentCreates
	}
	set(&c.CreateLatencyTarget, time.Second)
	if c.TeardownParallel == 0 {
		c.TeardownParallel = runtime.NumCPU()
	}
	set(&c.PoolBackoff, time.Second)
	set(&c.PoolMaxBackoff, 5*time.Minute)
	set(&c.PoolCheckInterval, 10*time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.DefaultLifetime < time.Second || c.DefaultLifetime > c.MaxLifetime:
		return fmt.Errorf("default lifetime %v must be between 1s and the maximum lifetime %v", c.DefaultLifetime, c.MaxLifetime)
	case c.DefaultLease > c.MaxLease:
		return fmt.Errorf("default lease %v must not exceed the maximum lease %v", c.DefaultLease, c.MaxLease)
	case c.SweepInterval < 0 || c.SafetySweepInterval < 0:
		return fmt.Errorf("sweep intervals must not be negative")
	case c.LifetimeBackstop > MaxLifetimeBackstop:
		return fmt.Errorf("lifetime backstop %v must be at most %v (negative turns it off)", c.LifetimeBackstop, MaxLifetimeBackstop)
	case c.MaxSandboxesPerTenant < 0 || c.Retention < 0 || c.Linger < 0:
		return fmt.Errorf("quota, retention and linger must not be negative")
	case c.MaxConcurrentCreates < 1 || c.MaxConcurrentCreates > MaxCreateLimit || c.CreateQueue < 0 || c.CreateQueue > MaxCreateLimit:
		return fmt.Errorf("max concurrent creates %d and create queue %d must be in 1..%d and 0..%d", c.MaxConcurrentCreates, c.CreateQueue, MaxCreateLimit, MaxCreateLimit)
	case c.TeardownParallel < 1 || c.TeardownParallel > MaxCreateLimit:
		return fmt.Errorf("teardown parallelism %d must be in 1..%d", c.TeardownParallel, MaxCreateLimit)
	case c.CreateLatencyTarget > time.Hour:
		return fmt.Errorf("create latency target %v must be at most 1h (negative turns it off)", c.CreateLatencyTarget)
	case c.PoolBackoff < 0 || c.PoolMaxBackoff < c.PoolBackoff:
		return fmt.Errorf("pool back-off %v must not be negative nor exceed the maximum %v", c.PoolBackoff, c.PoolMaxBackoff)
	}
	for _, p := range c.Pools {
		if d := p.Resources.DiskBytes; d != 0 && (d < minDiskBytes || d > c.MaxDiskBytes) {
			return fmt.Errorf("pool %s: disk bytes %d is out of range: give 0 (the default) or %d MiB to the max disk (%d bytes; 0 when disk limits are off)", p.Image, d, minDiskBytes>>20, c.MaxDiskBytes)
		}
	}
	return validatePools(c.Pools)
}

// defaultConcurrentCreates is how many creates the runtime works on at once
// by default on ncpu CPUs: three per two CPUs, rounded up. A create also
// waits on the OCI runtime and the agent, so more than one per CPU keeps the
// CPUs busy; but every create more at once costs each create more CPU (the
// kernel's locks, caches and context switches), and on 2 CPUs three at once
// made 3.2 % more sandboxes per second than four (2026-11-27, four
// interleaved pairs of 20 s sustained rounds: 17.8 against 18.4 ms of host
// CPU per sandbox life; burst of 500, accepted → RUNNING p99 134 against
// 165 ms). Three per CPU gave each create of a burst so thin a share that
// the tail grew past 1 s (docs/BENCHMARKS-HISTORY.md).
func defaultConcurrentCreates(ncpu int) int {
	return max(2, (3*ncpu+1)/2)
}
