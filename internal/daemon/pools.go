package daemon

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// PoolConfig is one warm pool: MinIdle sandboxes of Image with these
// resources kept created and idle (at most Max, idle plus refilling). A
// create matches it when its image (normalized: "busybox" is
// "docker.io/library/busybox:latest") and its resources (as requested;
// unset fields are the defaults) are the pool's.
type PoolConfig struct {
	Image   string `json:"image"`
	MinIdle int    `json:"minIdle"`
	// Max is 0 (= MinIdle) or at least MinIdle; between the two the pool
	// grows by one per miss of the last minute.
	Max int `json:"max,omitempty"`
	// Resources; 0 leaves a field at the server's default, like a create
	// that asks for none.
	CPUMillis   int64 `json:"cpuMillis,omitempty"`
	MemoryBytes int64 `json:"memoryBytes,omitempty"`
	Pids        int64 `json:"pids,omitempty"`
	DiskBytes   int64 `json:"diskBytes,omitempty"`
	// Runtime, when set, must be the server's runtime: every sandbox of a
	// server runs on one OCI runtime today.
	Runtime string `json:"runtime,omitempty"`
}

// ParsePoolFlag parses the --pool flag's IMAGE=MIN[:MAX] form.
func ParsePoolFlag(v string) (PoolConfig, error) {
	i := strings.LastIndex(v, "=")
	if i <= 0 {
		return PoolConfig{}, fmt.Errorf("pool %q must be IMAGE=MIN_IDLE[:MAX], e.g. busybox:1.36=4:8", v)
	}
	p := PoolConfig{Image: v[:i]}
	min, max, hasMax := strings.Cut(v[i+1:], ":")
	var err error
	if p.MinIdle, err = strconv.Atoi(min); err != nil {
		return PoolConfig{}, fmt.Errorf("pool %q: min idle %q is not a number", v, min)
	}
	if hasMax {
		if p.Max, err = strconv.Atoi(max); err != nil {
			return PoolConfig{}, fmt.Errorf("pool %q: max %q is not a number", v, max)
		}
	}
	return p, nil
}

func (c *Config) validatePools() error {
	for _, p := range c.Pools {
		if p.Runtime != "" && p.Runtime != c.Runtime {
			return fmt.Errorf("pool %s: runtime %q differs from the server's runtime %q: one server runs one OCI runtime; leave it empty", p.Image, p.Runtime, c.Runtime)
		}
	}
	return lifecycle.ValidatePools(c.lifecyclePools())
}

// lifecyclePools converts the pools for the lifecycle manager.
func (c *Config) lifecyclePools() []lifecycle.PoolConfig {
	var out []lifecycle.PoolConfig
	for _, p := range c.Pools {
		out = append(out, lifecycle.PoolConfig{
			Image:     p.Image,
			Resources: sandbox.Resources{CPUMillis: p.CPUMillis, MemoryBytes: p.MemoryBytes, Pids: p.Pids, DiskBytes: p.DiskBytes},
			MinIdle:   p.MinIdle,
			Max:       p.Max,
		})
	}
	return out
}
