package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Runtime teardowns (Runtime.Delete: kill what is left, unmount, remove
// cgroups, network and directories) cost the host tens of milliseconds of
// CPU and kernel time each, the same resources a create needs. Run inline
// in Delete they made every caller wait for them, and thousands started at
// once (deletes at 100/s, releases after the linger period) competed with
// creates for the CPU. So they are queued and run in the background by at
// most Config.TeardownParallel workers; while creates are in progress
// (Create calls, warm claims included, or accepted creates holding or
// waiting for a slot) by one only, which also waits up to teardownYield
// before each teardown for the creates to pass. Creates come first, and
// the queue still moves; once it holds teardownBacklog sandboxes (stopped,
// but holding mounts, cgroups and an address) it runs at full width.
//
// An idle sandbox that Delete could park (Config.Park: nothing in it runs
// any more, so it costs no CPU) waits longer: while creates come (one in
// progress, or one began or ended within createQuiet) its teardown holds,
// until creates pause, the queue holds parkedBacklog sandboxes, it waited
// parkedMaxWait, or someone waits for the queue (AwaitTeardowns,
// DrainTeardowns). A burst of claims from a warm pool then runs with the
// whole CPU, and its deletes' teardowns (the agent's exit, unmounts,
// network and cgroup removal: more CPU than the claim itself) follow it.
//
// None of that holds while user creates that need the runtime (cold ones:
// not claims, not the pools' refills) are in progress or ended within
// createQuiet: then every teardown runs at once, at full width, and Delete
// parks nothing (a freeze and a thaw would only add to the teardown). Work
// deferred is not work saved, and a cold create pays for every sandbox
// still standing: the kernel walks all mounts when it copies the mount
// namespace, all tasks in pivot_root, all sysfs superblocks, all the
// firewall's chains on every nftables commit, and so do teardowns. Under
// cold creates sustained for 30 s on the 2-core benchmark machine the held
// teardowns made 1024 sandboxes stand and the rate fell to 33/s; run at
// once they keep few standing and it holds 100/s (docs/BENCHMARKS.md).
//
// Nothing is lost if the server dies with teardowns queued: a teardown is
// queued only once the sandbox's record is deleted or terminal, and
// Recover deletes every container whose record is gone, and releases
// those whose record is terminal.

const (
	// teardownBacklog is the queue length at which teardowns stop giving
	// way to creates.
	teardownBacklog = 128
	// teardownYield bounds how long a teardown waits for creates to pass.
	// Short: a stopped sandbox waiting in the queue still holds its bridge
	// port (a Linux bridge takes 1024) and its address, which creates may
	// be short of; with 1 s, the last 128 of a burst's teardowns took over
	// two minutes under continuous creates and new sandboxes found the
	// bridge full.
	teardownYield = 100 * time.Millisecond
	// createQuiet is how long after the last create began or ended
	// creates count as still coming, for parked teardowns and refills.
	createQuiet = 250 * time.Millisecond
	// parkedBacklog is the queue length at which parked teardowns stop
	// waiting for creates to pause: each holds its memory, address and
	// bridge port meanwhile.
	parkedBacklog = 1024
	// parkedMaxWait bounds how long a parked teardown waits for creates
	// to pause.
	parkedMaxWait = 30 * time.Second
)

// teardown is one queued runtime teardown.
type teardown struct {
	id string
	// grace > 0 stops the sandbox gracefully first (SIGTERM, then SIGKILL
	// after grace), as Stop does; that wait happens before the job takes
	// a worker, since it costs nothing but time.
	grace time.Duration
	// parked: the sandbox was parked (Config.Park) and costs nothing
	// while it waits, so it may wait for creates to pause.
	parked bool
	queued time.Time
}

// teardowns is the queue of runtime teardowns and its workers.
type teardowns struct {
	limit int

	mu      sync.Mutex
	queue   []teardown
	queued  map[string]bool // ids in queue or running, so each is torn down once
	running int
	done    uint64
	failed  uint64
	// urgent counts callers waiting for the queue to empty: parked
	// teardowns then wait no more.
	urgent int
}

func newTeardowns(limit int) *teardowns {
	return &teardowns{limit: limit, queued: map[string]bool{}}
}

// TeardownStatus is what the teardown queue reports, for metrics and tests.
type TeardownStatus struct {
	// Queued teardowns wait for a worker; Running ones have one.
	Queued, Running int
	// Done counts teardowns finished since start; Failed counts those of
	// them whose Runtime.Delete failed (a sandbox already gone is no
	// failure), which left something behind for the retention purge or
	// the next start's Recover.
	Done, Failed uint64
}

// Teardowns returns the state of the teardown queue.
func (m *Manager) Teardowns() TeardownStatus {
	t := m.teardown
	t.mu.Lock()
	defer t.mu.Unlock()
	return TeardownStatus{Queued: len(t.queue), Running: t.running, Done: t.done, Failed: t.failed}
}

// DrainTeardowns waits until no teardown is queued or running, or ctx
// ends. A graceful shutdown calls it before Close: a sandbox deleted just
// before the server stops is then gone from the host when it exits, as
// callers (and scripts that remove the server's data dir after it) expect.
// Sandboxes still stopping gracefully before their teardown are not waited
// for; Recover releases them on the next start.
func (m *Manager) DrainTeardowns(ctx context.Context) error {
	defer m.hurryTeardowns()()
	for {
		if st := m.Teardowns(); st.Queued == 0 && st.Running == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			st := m.Teardowns()
			return fmt.Errorf("%d sandbox teardowns still queued and %d running: %w", st.Queued, st.Running, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// AwaitTeardowns waits until the teardowns queued or running when it is
// called have finished, or ctx ends; later ones are not waited for. A
// deleted sandbox holds what its container uses (its image, its network
// address) until its teardown, which runs moments after the Delete
// answered: callers that need those released (removing an image) wait
// here first.
func (m *Manager) AwaitTeardowns(ctx context.Context) error {
	defer m.hurryTeardowns()()
	t := m.teardown
	t.mu.Lock()
	ids := make([]string, 0, len(t.queued))
	for id := range t.queued {
		ids = append(ids, id)
	}
	t.mu.Unlock()
	for {
		t.mu.Lock()
		left := 0
		for _, id := range ids {
			if t.queued[id] {
				left++
			}
		}
		t.mu.Unlock()
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d sandbox teardowns still queued or running: %w", left, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// hurryTeardowns makes parked teardowns stop waiting for creates until
// the returned func is called, and starts workers for them.
func (m *Manager) hurryTeardowns() (done func()) {
	t := m.teardown
	t.mu.Lock()
	t.urgent++
	m.startTeardownsLocked()
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		t.urgent--
		t.mu.Unlock()
	}
}

// releaseRuntime queues the runtime teardown of sandbox id, whose record is
// gone or terminal. With grace > 0 the sandbox is first stopped gracefully,
// outside the queue. parked says Config.Park parked it.
func (m *Manager) releaseRuntime(id string, grace time.Duration, parked bool) {
	if m.base.Err() != nil {
		return // shutting down: Recover cleans up on the next start
	}
	if grace > 0 {
		m.goBackground(func() {
			ctx, cancel := context.WithTimeout(m.base, grace+time.Minute)
			defer cancel()
			if err := m.rt.Stop(ctx, id, grace); err != nil && !errors.Is(err, sandbox.ErrNotFound) && m.base.Err() == nil {
				m.cfg.Logger.Warn("stopping sandbox before teardown", "sandbox", id, "error", err)
			}
			m.releaseRuntime(id, 0, false)
		})
		return
	}
	t := m.teardown
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.queued[id] {
		return
	}
	t.queued[id] = true
	t.queue = append(t.queue, teardown{id: id, parked: parked, queued: time.Now()})
	m.startTeardownsLocked()
}

// startTeardownsLocked starts workers while there is queued work and room:
// Config.TeardownParallel, or one while user creates wait for a slot.
func (m *Manager) startTeardownsLocked() {
	t := m.teardown
	for len(t.queue) > 0 && t.running < m.teardownLimit() {
		job := m.nextTeardownLocked()
		t.running++
		m.goBackground(func() { m.runTeardowns(job) })
	}
}

// nextTeardownLocked takes the next job off the queue: the first one not
// parked, since a parked one may wait for creates to pause, and else the
// first. The caller holds the queue's lock; the queue is not empty.
func (m *Manager) nextTeardownLocked() teardown {
	t := m.teardown
	i := 0
	for i < len(t.queue) && t.queue[i].parked {
		i++
	}
	if i == len(t.queue) {
		i = 0
	}
	job := t.queue[i]
	t.queue = append(t.queue[:i], t.queue[i+1:]...)
	return job
}

// teardownLimit is how many teardowns may run now. The caller holds the
// queue's lock.
func (m *Manager) teardownLimit() int {
	if len(m.teardown.queue) < teardownBacklog && m.createsBusy() && m.teardown.urgent == 0 && !m.coldComing() {
		return 1
	}
	return m.teardown.limit
}

// createsBusy reports whether creates are in progress: Create calls (warm
// claims included), or accepted creates holding or waiting for a slot.
func (m *Manager) createsBusy() bool {
	return m.inCreate.Load() > 0 || m.admit.userBusy()
}

// coldComing reports whether user creates that need the runtime are in
// progress, or one ended within createQuiet: teardowns then hold for none
// (see the top of this file).
func (m *Manager) coldComing() bool { return m.admit.userComing(createQuiet) }

// createsComing reports whether creates are in progress or one began or
// ended within createQuiet.
func (m *Manager) createsComing() bool {
	return m.createsBusy() || time.Since(time.Unix(0, m.lastCreate.Load())) < createQuiet
}

// holdParked waits while job, a parked sandbox's teardown, may wait for
// creates to pause (see the top of this file).
func (m *Manager) holdParked(job teardown) {
	m.waitForCreates(m.createsComing, job.queued.Add(parkedMaxWait), parkedBacklog, 25*time.Millisecond)
}

// yieldToCreates waits, up to teardownYield, while creates are in
// progress and the queue is short; a parked job waits longer (holdParked).
func (m *Manager) yieldToCreates(job teardown) {
	if job.parked {
		m.holdParked(job)
	}
	m.waitForCreates(m.createsBusy, time.Now().Add(teardownYield), teardownBacklog, 10*time.Millisecond)
}

// waitForCreates sleeps in steps of tick while busy reports creates,
// until deadline, the queue holds backlog teardowns, someone waits for the
// queue (urgent), cold creates come (coldComing), or the manager closes.
func (m *Manager) waitForCreates(busy func() bool, deadline time.Time, backlog int, tick time.Duration) {
	for time.Now().Before(deadline) && busy() && !m.coldComing() {
		m.teardown.mu.Lock()
		stop := len(m.teardown.queue) >= backlog || m.teardown.urgent > 0
		m.teardown.mu.Unlock()
		if stop {
			return
		}
		select {
		case <-m.base.Done():
			return
		case <-time.After(tick):
		}
	}
}

// runTeardowns runs job, then further queued jobs while the limit allows,
// so that a busy queue does not start a goroutine per sandbox. Its context
// ends with the manager: a runtime may finish or abandon a teardown then
// (the local runtime finishes it), and Recover deletes what is left.
func (m *Manager) runTeardowns(job teardown) {
	t := m.teardown
	for {
		m.yieldToCreates(job)
		if job.parked && m.base.Err() != nil {
			// Shutting down while it waited: Recover deletes it on the
			// next start; the server need not wait for it now.
			t.mu.Lock()
			delete(t.queued, job.id)
			t.running--
			t.mu.Unlock()
			return
		}
		ctx, cancel := context.WithTimeout(m.base, time.Minute)
		t0 := time.Now()
		err := m.rt.Delete(ctx, job.id)
		d := time.Since(t0)
		cancel()
		if errors.Is(err, sandbox.ErrNotFound) {
			err = nil // gone already: nothing left behind
		}
		if err != nil && m.base.Err() == nil {
			m.cfg.Logger.Warn("deleting sandbox from runtime", "sandbox", job.id, "error", err)
		}
		if m.cfg.OnTeardown != nil {
			m.cfg.OnTeardown(d, err)
		}
		t.mu.Lock()
		delete(t.queued, job.id)
		t.done++
		if err != nil {
			t.failed++
		}
		if m.base.Err() != nil || len(t.queue) == 0 || t.running > m.teardownLimit() {
			t.running--
			t.mu.Unlock()
			return
		}
		job = m.nextTeardownLocked()
		// Creates may have paused: let the queue widen again.
		m.startTeardownsLocked()
		t.mu.Unlock()
	}
}

// cleanupRuntime stops and deletes a sandbox's container now, ignoring
// NotFound. It runs detached from the manager's end, since a half-done
// teardown is worse than a late one.
func (m *Manager) cleanupRuntime(id string, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace+time.Minute)
	defer cancel()
	if err := m.rt.Delete(ctx, id); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
		m.cfg.Logger.Warn("deleting sandbox from runtime", "sandbox", id, "error", err)
	}
}
