package lifecycle

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// Warm pools keep sandboxes created (container up, agent answering: the
// whole of Runtime.Create), started empty (the image's defaults, which the
// agent holds as provisional) and idle, so that a matching Create needs at
// most Runtime.Start, and none when it brings no start of its own. An idle
// pool sandbox is a store.PoolSandbox, not a sandbox record: no tenant sees
// it and no quota counts it until a Create claims it
// (store.ClaimPoolSandbox), which keeps its id.

// Bounds of the pool configuration.
const (
	// MaxPools bounds the number of configured pools.
	MaxPools = 64
	// MaxPoolSize bounds a pool's min idle and max.
	MaxPoolSize = 1000
	// refillParallel is how many refills of one pool run at once: enough
	// to refill after a burst, few enough to leave the CPU to claims.
	refillParallel = 2
	// demandWindow is how long a miss raises a pool's target (see target).
	demandWindow = time.Minute
	// refillHoldIdle is the fewest idle sandboxes with which a pool's
	// refills wait for creates to pause (refillHolds).
	refillHoldIdle = 16
)

// reasonClaimed is the CREATING reason of a sandbox taken from a warm pool.
const reasonClaimed = "creating from a warm pool"

// PoolConfig configures one warm pool. A Create matches it when its image
// (normalized: "busybox" is "index.docker.io/library/busybox:latest") and
// its resources (as requested, zero fields meaning the server's defaults)
// are the pool's.
type PoolConfig struct {
	// Image is the image reference of the pool's sandboxes.
	Image string
	// Resources are their cgroup limits; zero fields are the defaults.
	Resources sandbox.Resources
	// MinIdle is how many idle sandboxes the pool keeps ready.
	MinIdle int
	// Max bounds the pool's idle plus refilling sandboxes; 0 means MinIdle.
	// Between the two, the pool learns from demand: each miss in the last
	// minute raises its target by one.
	Max int
}

// PoolStatus is what a pool reports about itself.
type PoolStatus struct {
	// Key identifies the pool: normalized image plus non-default resources.
	Key    string
	Config PoolConfig
	// Idle sandboxes are ready to be claimed; Warming ones are being created.
	Idle, Warming int
	// Target is how many the pool refills to: MinIdle plus the misses of
	// the last minute, at most Max.
	Target int
	// Hits are Creates served from the pool, Misses matching Creates that
	// found it empty (and started cold).
	Hits, Misses uint64
	// Refills counts sandboxes the pool created, RefillFailures failed tries.
	Refills, RefillFailures uint64
	// LastRefill and MeanRefill are create durations of successful refills.
	LastRefill, MeanRefill time.Duration
	LastRefillAt           time.Time
	// LastError is why the last refill failed; cleared by a success.
	LastError   string
	LastErrorAt time.Time
	// Backoff is the current back-off after consecutive failures, and
	// RetryAt when the next refill is tried.
	Backoff time.Duration
	RetryAt time.Time
}

// poolKey returns the key of a pool or request for image and resources.
func poolKey(image string, r sandbox.Resources) (string, error) {
	ref, err := name.ParseReference(image)
	if err != nil {
		return "", sandbox.InvalidArgument(sandbox.ReasonInvalidImageRef, "image reference %q is malformed: write it like busybox:1.36 or registry.example:5000/team/app:v1", image)
	}
	key := ref.Name()
	if r != (sandbox.Resources{}) {
		key += fmt.Sprintf(" cpu=%dm memory=%d pids=%d", r.CPUMillis, r.MemoryBytes, r.Pids)
		if r.DiskBytes != 0 {
			// Only when set, so that the keys of existing pools stay.
			key += fmt.Sprintf(" disk=%d", r.DiskBytes)
		}
	}
	return key, nil
}

// ValidatePools checks pool configurations as New does, for config
// parsers that want to fail early.
func ValidatePools(ps []PoolConfig) error { return validatePools(ps) }

func validatePools(ps []PoolConfig) error {
	if len(ps) > MaxPools {
		return fmt.Errorf("%d pools are configured: at most %d are allowed", len(ps), MaxPools)
	}
	seen := map[string]bool{}
	for _, p := range ps {
		key, err := poolKey(p.Image, p.Resources)
		if err != nil {
			return fmt.Errorf("pool: %w", err)
		}
		r := p.Resources
		switch {
		case p.MinIdle < 0 || p.MinIdle > MaxPoolSize:
			return fmt.Errorf("pool %s: min idle %d is out of range 0..%d", key, p.MinIdle, MaxPoolSize)
		case p.Max < 0 || p.Max > MaxPoolSize || (p.Max > 0 && p.Max < p.MinIdle):
			return fmt.Errorf("pool %s: max %d is out of range: give 0 (= min idle) or min idle (%d)..%d", key, p.Max, p.MinIdle, MaxPoolSize)
		case r.CPUMillis < 0 || r.CPUMillis > maxCPUMillis || r.MemoryBytes < 0 || r.MemoryBytes > maxMemoryBytes || r.Pids < 0 || r.Pids > maxPids || r.DiskBytes < 0 || r.DiskBytes > maxDiskBytes:
			return fmt.Errorf("pool %s: resources %+v are out of range", key, r)
		case seen[key]:
			return fmt.Errorf("pool %s is configured twice: merge the two entries", key)
		}
		seen[key] = true
	}
	return nil
}

// pool is one warm pool's in-memory state. The idle ids are also in the
// store (store.PoolSandbox), which is what a restarted server re-finds.
type pool struct {
	key  string
	cfg  PoolConfig
	wake chan struct{}

	mu   sync.Mutex
	idle []string // oldest first
	// started holds the idle ids whose agent applied the image's defaults
	// already (an empty Runtime.Start, see refillOne): a claim that brings
	// no start of its own needs no agent call for them.
	started     map[string]bool
	warming     int
	hits        uint64
	misses      uint64
	refills     uint64
	failures    uint64
	refillTotal time.Duration
	lastRefill  time.Duration
	lastAt      time.Time
	lastErr     string
	lastErrAt   time.Time
	backoff     time.Duration
	retryAt     time.Time
	// recentMisses are the times of misses within demandWindow (at most
	// Max of them are kept, since the target cannot exceed Max).
	recentMisses []time.Time
}

// poolSet holds the configured pools by key, in configuration order.
type poolSet struct {
	byKey map[string]*pool
	order []*pool
}

func newPoolSet(cfgs []PoolConfig) *poolSet {
	ps := &poolSet{byKey: map[string]*pool{}}
	for _, c := range cfgs {
		if c.Max == 0 {
			c.Max = c.MinIdle
		}
		key, _ := poolKey(c.Image, c.Resources) // validated by Config.validate
		p := &pool{key: key, cfg: c, wake: make(chan struct{}, 1), started: map[string]bool{}}
		ps.byKey[key] = p
		ps.order = append(ps.order, p)
	}
	return ps
}

// signal wakes the pool's refill loop.
func (p *pool) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// take removes and returns the oldest idle id, and whether its agent was
// started with the image's defaults.
func (p *pool) take() (id string, started, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) == 0 {
		return "", false, false
	}
	id = p.idle[0]
	p.idle = p.idle[1:]
	started = p.started[id]
	delete(p.started, id)
	return id, started, true
}

// putBack returns an id that take gave out but a claim did not use.
func (p *pool) putBack(id string, started bool) {
	p.mu.Lock()
	p.idle = append([]string{id}, p.idle...)
	if started {
		p.started[id] = true
	}
	p.mu.Unlock()
}

func (p *pool) count(hit bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if hit {
		p.hits++
		return
	}
	p.misses++
	p.recentMisses = append(p.recentMisses, time.Now())
	if extra := len(p.recentMisses) - p.cfg.Max; extra > 0 {
		p.recentMisses = p.recentMisses[extra:]
	}
}

// target is how many sandboxes (idle plus warming) the pool refills to:
// MinIdle plus one per miss within demandWindow, at most Max. A pool that
// was too small for a burst so grows for the next one, and shrinks back
// (by being used up) once demand drops. The caller holds p.mu.
func (p *pool) target(now time.Time) int {
	i := 0
	for i < len(p.recentMisses) && now.Sub(p.recentMisses[i]) > demandWindow {
		i++
	}
	p.recentMisses = p.recentMisses[i:]
	return min(p.cfg.Max, p.cfg.MinIdle+len(p.recentMisses))
}

func (p *pool) status() PoolStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := PoolStatus{
		Key: p.key, Config: p.cfg, Idle: len(p.idle), Warming: p.warming, Target: p.target(time.Now()),
		Hits: p.hits, Misses: p.misses, Refills: p.refills, RefillFailures: p.failures,
		LastRefill: p.lastRefill, LastRefillAt: p.lastAt,
		LastError: p.lastErr, LastErrorAt: p.lastErrAt, Backoff: p.backoff, RetryAt: p.retryAt,
	}
	if p.refills > 0 {
		s.MeanRefill = p.refillTotal / time.Duration(p.refills)
	}
	return s
}

// Pools returns the status of every configured pool, in configuration order.
func (m *Manager) Pools() []PoolStatus {
	out := make([]PoolStatus, 0, len(m.pools.order))
	for _, p := range m.pools.order {
		out = append(out, p.status())
	}
	return out
}

// poolFor returns the pool a request matches, or nil.
func (m *Manager) poolFor(req *CreateRequest) *pool {
	if len(m.pools.order) == 0 {
		return nil
	}
	key, err := poolKey(req.Image, req.Resources)
	if err != nil {
		return nil
	}
	return m.pools.byKey[key]
}

// refillLoop keeps p at its target: it starts refills (at most
// refillParallel at once) whenever p is short and not backing off, and
// sleeps until a claim, a finished refill or the end of a back-off.
func (m *Manager) refillLoop(p *pool) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := time.Hour
		p.mu.Lock()
		for p.warming < refillParallel && len(p.idle)+p.warming < p.target(time.Now()) {
			if now := time.Now(); now.Before(p.retryAt) {
				wait = p.retryAt.Sub(now)
				break
			}
			if m.refillHolds(p) {
				wait = createQuiet
				break
			}
			p.warming++
			m.goBackground(func() { m.refillOne(p) })
		}
		p.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-m.base.Done():
			return
		case <-p.wake:
		case <-timer.C:
		}
	}
}

// refillHolds reports whether p's refills wait for creates to pause: while
// creates come (teardown.go, createsComing) and p still holds more than an
// eighth of its MinIdle, and at least refillHoldIdle. A refill is a cold
// start, several times the CPU of a claim: during a burst of claims it
// would take the CPU the claims need, while the pool still serves them.
// The caller holds p.mu.
func (m *Manager) refillHolds(p *pool) bool {
	return len(p.idle) >= refillHoldIdle && len(p.idle) > p.cfg.MinIdle/8 && m.createsComing()
}

// refillOne creates one sandbox for p and records it as idle, or records
// the failure and backs off.
func (m *Manager) refillOne(p *pool) {
	id := newID("sb-")
	spec := sandbox.Spec{ID: id, Image: p.cfg.Image, Resources: p.cfg.Resources}
	ctx, cancel := context.WithTimeout(m.base, m.cfg.CreateTimeout)
	defer cancel()
	// A refill waits until no user create needs the slot (admission.go).
	err := m.admit.acquireBackground(ctx)
	t0 := time.Now()
	if err == nil {
		_, err = m.rt.Create(ctx, spec)
		m.admit.release(time.Since(t0), true)
	}
	// Start it empty too, with the image's defaults: a claim for a request
	// that brings no start of its own then needs no agent call, and any
	// other claim's start replaces this one (the agent takes an empty
	// start as provisional until a process runs). If that fails the
	// sandbox still serves, with the claim's start.
	started := false
	if err == nil {
		if serr := m.rt.Start(ctx, id, sandbox.StartSpec{}); serr != nil {
			m.cfg.Logger.Warn("warm pool sandbox not pre-started", "sandbox", id, "pool", p.key, "error", serr)
		} else {
			started = true
		}
	}
	if err == nil {
		err = m.st.CreatePoolSandbox(ctx, &store.PoolSandbox{ID: id, Pool: p.key, Spec: spec, CreatedAt: m.cfg.Now()})
		if err != nil {
			m.cleanupRuntime(id, 0)
		}
	}
	d := time.Since(t0)
	if m.cfg.OnPoolRefill != nil && m.base.Err() == nil {
		m.cfg.OnPoolRefill(p.key, d, err)
	}
	defer p.signal()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.warming--
	if m.base.Err() != nil {
		return // shutting down: a stored idle sandbox is re-found on restart
	}
	if err != nil {
		p.failures++
		p.lastErr = errorReason(err)
		p.lastErrAt = m.cfg.Now()
		if p.backoff == 0 {
			p.backoff = m.cfg.PoolBackoff
		} else {
			p.backoff = min(2*p.backoff, m.cfg.PoolMaxBackoff)
		}
		p.retryAt = time.Now().Add(p.backoff)
		m.cfg.Logger.Warn("warm pool refill failed", "pool", p.key, "error", err, "retry_in", p.backoff)
		return
	}
	p.idle = append(p.idle, id)
	if started {
		p.started[id] = true
	}
	p.refills++
	p.refillTotal += d
	p.lastRefill = d
	p.lastAt = m.cfg.Now()
	p.lastErr, p.lastErrAt, p.backoff, p.retryAt = "", time.Time{}, 0, time.Time{}
}
