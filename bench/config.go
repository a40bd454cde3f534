package bench

import (
	"fmt"
	"time"
)

// Config holds the sizes of one run. Validate bounds every one of them, so
// a typo cannot start a million sandboxes.
type Config struct {
	URL string `json:"url,omitempty"` // empty: start a server
	// Transport is how the SDK reaches a started server: "unix" (its API
	// socket, what a local client picks by default) or "tcp" (loopback).
	Transport  string        `json:"transport"`
	Image      string        `json:"image"`
	OCIRuntime string        `json:"oci_runtime"` // crun or runc, for the server and the floor
	Creates    int           `json:"creates"`
	Warm       int           `json:"warm"`
	WarmImage  string        `json:"warm_image"`
	Execs      int           `json:"execs"`
	Sustained  time.Duration `json:"sustained_ns"`
	Workers    int           `json:"sustained_workers"`
	Burst      int           `json:"burst"`
	Density    int           `json:"density"`
	// Crowded is how long the sustained loop runs again while the density
	// scenario's idle sandboxes are alive (scenario sustained_crowded;
	// 0 skips it): what creates cost with many sandboxes around.
	Crowded time.Duration `json:"sustained_crowded_ns,omitempty"`
	// DenyEgress is how long the sustained loop runs again with deny_egress
	// on every sandbox (scenario sustained_deny_egress; 0 skips it): what
	// a network policy of a sandbox's own adds to a create.
	DenyEgress  time.Duration `json:"sustained_deny_egress_ns,omitempty"`
	Quota       int           `json:"quota"`
	Full        bool          `json:"full"` // adds the 1 GiB file
	Baselines   bool          `json:"baselines"`
	BaselineRun int           `json:"baseline_runs"`

	// PoolRate creates/s are offered for PoolFor from a warm pool of
	// PoolSize idle sandboxes of PoolImage (scenario pool_rate; 0 skips it).
	PoolRate  float64       `json:"pool_rate"`
	PoolFor   time.Duration `json:"pool_for_ns"`
	PoolSize  int           `json:"pool_size"`
	PoolImage string        `json:"pool_image"`
	// ServeArgs are more flags for the `sbx serve` the harness starts.
	ServeArgs []string `json:"serve_args,omitempty"`
}

// Validate checks the sizes and fills the derived defaults.
func (c *Config) Validate() error {
	check := func(name string, v, lo, hi int) error {
		if v < lo || v > hi {
			return fmt.Errorf("%s %d is out of range %d..%d", name, v, lo, hi)
		}
		return nil
	}
	for _, e := range []error{
		check("--creates", c.Creates, 1, 10_000),
		check("--execs", c.Execs, 1, 100_000),
		check("--warm", c.Warm, 0, 10_000),
		check("--workers", c.Workers, 1, 256),
		check("--burst", c.Burst, 0, 5_000),
		check("--density", c.Density, 0, 10_000),
		check("--baseline-runs", c.BaselineRun, 1, 1_000),
	} {
		if e != nil {
			return e
		}
	}
	if c.PoolRate < 0 || c.PoolRate > 10_000 || c.PoolFor < 0 || c.PoolFor > 10*time.Minute {
		return fmt.Errorf("--pool-rate %v must be in 0..10000 and --pool-for %s in 0..10m", c.PoolRate, c.PoolFor)
	}
	if err := check("--pool-size", c.PoolSize, 1, 1000); c.PoolRate > 0 && err != nil {
		return err
	}
	if c.Sustained < 0 || c.Sustained > 30*time.Minute {
		return fmt.Errorf("--sustained %s is out of range 0..30m", c.Sustained)
	}
	if c.Crowded < 0 || c.Crowded > 30*time.Minute {
		return fmt.Errorf("--sustained-crowded %s is out of range 0..30m", c.Crowded)
	}
	if c.DenyEgress < 0 || c.DenyEgress > 30*time.Minute {
		return fmt.Errorf("--sustained-deny-egress %s is out of range 0..30m", c.DenyEgress)
	}
	if c.Crowded > 0 && c.Density == 0 {
		return fmt.Errorf("--sustained-crowded runs among the density scenario's sandboxes: give --density too")
	}
	switch c.Transport {
	case "":
		c.Transport = "unix"
	case "unix", "tcp":
	default:
		return fmt.Errorf("--transport %q: use unix or tcp", c.Transport)
	}
	switch c.OCIRuntime {
	case "crun", "runc":
	default:
		return fmt.Errorf("--oci-runtime %q: use crun or runc", c.OCIRuntime)
	}
	if c.Quota == 0 {
		c.Quota = max(100, c.Burst, c.Density+2)
		if c.Crowded > 0 {
			// The loop's sandboxes, and those whose deletes are queued.
			c.Quota = max(c.Quota, c.Density+2+32*c.Workers)
		}
	}
	return check("--quota", c.Quota, 1, 100_000)
}
