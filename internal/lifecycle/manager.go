package lifecycle

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// Manager runs the lifecycle of every sandbox and session of one server.
// Its methods take the caller's tenant id; another tenant's sandbox or
// session is NotFound.
type Manager struct {
	rt     sandbox.Runtime
	st     store.Store
	cfg    Config
	notify *notifier
	pools  *poolSet
	// admit bounds the runtime creates in flight (admission.go).
	admit *admission
	// teardown queues runtime teardowns (teardown.go), which give way to
	// the Create calls in progress, counted by inCreate.
	teardown *teardowns
	inCreate atomic.Int64
	// lastCreate is when a Create call last began or ended (Unix ns):
	// parked teardowns and pool refills wait until creates pause.
	lastCreate atomic.Int64
	// quota caches the tenants' active counts (quota.go).
	quota quotaCache
	// deadlines schedules the live sandboxes' lifetimes and sessions for
	// the sweep (deadlines.go).
	deadlines *deadlines

	// base is the context of background work (creates, watches, sweeps);
	// Close cancels it, which leaves sandboxes running.
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// quotaMu serializes count-then-insert per tenant, so that concurrent
	// creates cannot overshoot a quota on one server.
	quotaMu sync.Map // tenant id → *sync.Mutex
	// stopping holds ids with a stop in flight, so sweeps start one only.
	stopping sync.Map
	// watching holds ids whose main command is being watched.
	watching sync.Map
	// running maps the ids this manager moved to RUNNING to their tenant,
	// until they move on (agent.go): exec and file calls skip a store read.
	running sync.Map
}

// New returns a manager. Call Start before serving requests.
func New(rt sandbox.Runtime, st store.Store, cfg Config) (*Manager, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("lifecycle config: %w", err)
	}
	base, cancel := context.WithCancel(context.Background())
	return &Manager{rt: rt, st: st, cfg: cfg, notify: newNotifier(), pools: newPoolSet(cfg.Pools),
		admit:    newAdmission(cfg.MaxConcurrentCreates, cfg.CreateQueue, cfg.CreateLatencyTarget),
		teardown: newTeardowns(cfg.TeardownParallel), deadlines: newDeadlines(), base: base, cancel: cancel}, nil
}

// Config returns the effective configuration (defaults applied).
func (m *Manager) Config() Config { return m.cfg }

// Start recovers the state left by an earlier server process (see Recover
// and recoverPools), starts the background sweeps of lifetimes, leases and
// retention, and the refills of the warm pools.
func (m *Manager) Start(ctx context.Context) error {
	if err := m.Recover(ctx); err != nil {
		return err
	}
	if err := m.recoverPools(ctx); err != nil {
		return err
	}
	for _, p := range m.pools.order {
		m.goBackground(func() { m.refillLoop(p) })
	}
	if len(m.pools.order) > 0 {
		m.goBackground(m.poolCheckLoop)
	}
	recovered := m.cfg.Now() // Recover has just read every live record
	m.goBackground(func() { m.sweepLoop(recovered) })
	return nil
}

// Close stops the manager's background work and waits for it. Sandboxes
// keep running; a new manager re-attaches to them.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

func (m *Manager) goBackground(fn func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fn()
	}()
}

func (m *Manager) tenantLock(tenantID string) *sync.Mutex {
	mu, _ := m.quotaMu.LoadOrStore(tenantID, &sync.Mutex{})
	return mu.(*sync.Mutex)
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns prefix plus 16 random base32 characters (80 bits).
func newID(prefix string) string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return prefix + strings.ToLower(idEncoding.EncodeToString(b))
}
