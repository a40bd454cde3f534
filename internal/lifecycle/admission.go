package lifecycle

import (
	"context"
	"sync"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Admission control. A cold create costs the machine tens of milliseconds of
// CPU (the OCI runtime, the agent's start); a burst of hundreds started at
// once makes every one of them slow (each gets a sliver of the CPU) and the
// last ones time out. So at most Config.MaxConcurrentCreates runtime creates
// run at once, at most Config.CreateQueue more wait for a slot in arrival
// order, and a Create beyond that is refused before anything is stored,
// with RESOURCE_EXHAUSTED CREATE_QUEUE_FULL and a retry delay estimated
// from the current queue and the callers refused before it. Callers retry
// later and the ones accepted start quickly: the burst is served in waves
// instead of collapsing.
//
// Warm pool claims are not counted: they need no runtime create. Pool
// refills take a slot only when no accepted create waits for one, and only
// up to half the slots, so a refill never delays a user's create by more
// than the refill already running.

// Bounds of the retry delay of CREATE_QUEUE_FULL. The upper bound is long
// on purpose: a burst takes as long as it takes to create, and callers told
// to come back too early find the queue full again, while a bound shorter
// than the drain time sends every late caller back at the same instant.
const (
	minQueueRetry = 100 * time.Millisecond
	maxQueueRetry = time.Minute
	// initialCreateEstimate is the mean create time assumed before any
	// create finished; the first one to finish replaces it.
	initialCreateEstimate = 300 * time.Millisecond
)

// admission is the gate of runtime creates.
type admission struct {
	limit, queueMax int
	// target bounds the expected time from acceptance to the end of a
	// create's runtime create (0: no bound); see fullLocked.
	target time.Duration

	mu sync.Mutex
	// running counts slots held (user creates and refills); refills of
	// them are counted apart too.
	running, refills int
	// reserved counts accepted user creates that hold no slot yet; waiters
	// are those of them blocked in acquire, in arrival order.
	reserved int
	waiters  []chan struct{}
	// bgWake is closed (and replaced) when a refill may try again.
	bgWake chan struct{}
	// mean is a moving average of how long a slot is held; measured says
	// it is one (a create finished), not the initial guess.
	mean     time.Duration
	measured bool
	// lastRetry is the retry time given to the last refused create.
	lastRetry time.Time
	// lastUser is when a user create last gave its slot back.
	lastUser time.Time
}

func newAdmission(limit, queue int, target time.Duration) *admission {
	return &admission{limit: limit, queueMax: queue, target: max(target, 0), mean: initialCreateEstimate, bgWake: make(chan struct{})}
}

// userBusy reports whether accepted user creates hold or wait for a slot.
func (a *admission) userBusy() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reserved > 0 || a.running > a.refills
}

// userComing reports whether accepted user creates hold or wait for a
// slot, or one gave its slot back within quiet.
func (a *admission) userComing(quiet time.Duration) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reserved > 0 || a.running > a.refills || time.Since(a.lastUser) < quiet
}

// reserve admits one user create, or refuses it with CREATE_QUEUE_FULL when
// every slot and queue place is taken. An admitted create must call acquire
// (and later release) or unreserve.
func (a *admission) reserve() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.fullLocked(); err != nil {
		return err
	}
	a.reserved++
	return nil
}

// check is reserve without reserving: Create calls it first, so that a
// refusal under a burst costs no store access and waits for no lock.
func (a *admission) check() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fullLocked()
}

func (a *admission) fullLocked() error {
	userRunning := a.running - a.refills
	var msg string
	switch {
	case userRunning+a.reserved >= a.limit+a.queueMax:
		msg = "the server is creating %d sandboxes and has %d more queued, its limit: retry after the delay given"
	case a.target > 0 && a.aheadLocked() > 0 && a.expectedLocked() > a.target:
		// (A create that finds a slot free is accepted whatever the
		// mean: refusing it would not make anything faster.)
		msg = "the server is creating %d sandboxes and has %d more queued: a create accepted now would not start within the server's latency target; retry after the delay given"
	default:
		return nil
	}
	e := sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonCreateQueueFull, msg, userRunning, a.reserved)
	e.RetryAfter = a.retryAfterLocked()
	return e
}

// expectedLocked is how long a create accepted now would take until its
// runtime create ends: its own mean create time if a slot is free for it,
// plus, if it must queue, one mean per limit creates queued ahead of it
// (the running ones end at spread-out times, so a queue drains at about
// limit per mean). Refills give their slot back first, so they count as
// free.
func (a *admission) expectedLocked() time.Duration {
	ahead := a.aheadLocked()
	if ahead <= 0 {
		return a.mean
	}
	return a.mean + time.Duration(ahead)*a.mean/time.Duration(a.limit)
}

// retryAfterLocked tells a refused create when to come back: when enough
// of the creates ahead of it (running and queued) have drained, at limit
// per mean create time, for one more to be accepted (within the queue and
// the latency target). Refused callers are spread out behind each other at
// the rate places free up (one per mean/limit), as in a virtual queue, so
// that they do not all come back at once and be refused again.
func (a *admission) retryAfterLocked() time.Duration {
	now := time.Now()
	step := a.mean / time.Duration(a.limit)
	ahead := a.running - a.refills + a.reserved
	at := now.Add(time.Duration(max(ahead-a.capacityLocked()+1, 0)) * step)
	if next := a.lastRetry.Add(step); next.After(at) {
		at = next
	}
	d := min(max(at.Sub(now), minQueueRetry), maxQueueRetry)
	a.lastRetry = now.Add(d)
	return d
}

// aheadLocked is how many slots must free up before a create accepted
// now gets one: none if one is free for it.
func (a *admission) aheadLocked() int {
	free := a.limit - (a.running - a.refills)
	return a.reserved + 1 - free
}

// capacityLocked is how many user creates may be running or queued at the
// current mean create time: the slots, plus the queue places that meet
// the latency target (at most the configured queue).
func (a *admission) capacityLocked() int {
	queue := a.queueMax
	if a.target > 0 {
		// expectedLocked at queue place q (from 0), no slot free:
		// mean + (q+1)*mean/limit; places 0..fit-1 meet the target.
		fit := int((a.target - a.mean) * time.Duration(a.limit) / a.mean)
		queue = min(queue, max(fit, 0))
	}
	return a.limit + queue
}

// unreserve gives back a reservation that will not be used (the record
// could not be stored).
func (a *admission) unreserve() {
	a.mu.Lock()
	a.reserved--
	a.grantLocked()
	a.mu.Unlock()
}

// acquire turns a reservation into a slot, waiting in arrival order. On
// ctx's end the reservation is given back and ctx's error returned.
func (a *admission) acquire(ctx context.Context) error {
	a.mu.Lock()
	if len(a.waiters) == 0 && a.running < a.limit {
		a.reserved--
		a.running++
		a.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	a.waiters = append(a.waiters, ch)
	a.mu.Unlock()
	select {
	case <-ch:
		return nil // grantLocked moved us from reserved to running
	case <-ctx.Done():
		a.mu.Lock()
		defer a.mu.Unlock()
		select {
		case <-ch:
			// Granted while we gave up: hand the slot on.
			a.running--
		default:
			for i, w := range a.waiters {
				if w == ch {
					a.waiters = append(a.waiters[:i], a.waiters[i+1:]...)
					break
				}
			}
			a.reserved--
		}
		a.grantLocked()
		return ctx.Err()
	}
}

// acquireBackground takes a slot for a pool refill: only when no user
// create waits and fewer than half the slots (at least one) hold refills.
func (a *admission) acquireBackground(ctx context.Context) error {
	for {
		a.mu.Lock()
		if a.reserved == 0 && a.running < a.limit && a.refills < max(a.limit/2, 1) {
			a.running++
			a.refills++
			a.mu.Unlock()
			return nil
		}
		wake := a.bgWake
		a.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// release frees a slot held for d (refill tells whose it was) and hands it
// to the next waiter.
func (a *admission) release(d time.Duration, refill bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.running--
	if refill {
		a.refills--
	} else {
		a.lastUser = time.Now()
	}
	switch {
	case d <= 0:
	case !a.measured:
		// The guess was for a machine four times slower than the
		// benchmark's: averaged in, it took tens of creates to wear off,
		// and a burst on a fresh server was told to come back over 13 s
		// where its creates took 3 s (as TCP's first RTT sample replaces
		// its initial RTO).
		a.mean, a.measured = d, true
	default:
		a.mean = (7*a.mean + d) / 8
	}
	a.grantLocked()
}

// grantLocked gives free slots to waiting user creates, first come first
// served, then wakes refills if none waits.
func (a *admission) grantLocked() {
	for len(a.waiters) > 0 && a.running < a.limit {
		ch := a.waiters[0]
		a.waiters = a.waiters[1:]
		a.reserved--
		a.running++
		close(ch)
	}
	if a.reserved == 0 && a.running < a.limit {
		close(a.bgWake)
		a.bgWake = make(chan struct{})
	}
}

// AdmissionStatus is what the create gate reports, for metrics.
type AdmissionStatus struct {
	// Limit and Queue are the configured bounds.
	Limit, Queue int
	// Running counts runtime creates in progress (Refills of them for
	// warm pools); Queued counts accepted creates waiting for a slot.
	Running, Refills, Queued int
	// MeanCreate is the moving average of a runtime create's duration.
	MeanCreate time.Duration
	// Expected is how long a create accepted now would take to its end
	// of Runtime.Create; Target the bound on it (0: none).
	Expected, Target time.Duration
}

// Admission returns the state of the create gate.
func (m *Manager) Admission() AdmissionStatus {
	a := m.admit
	a.mu.Lock()
	defer a.mu.Unlock()
	return AdmissionStatus{Limit: a.limit, Queue: a.queueMax, Running: a.running, Refills: a.refills, Queued: a.reserved,
		MeanCreate: a.mean, Expected: a.expectedLocked(), Target: a.target}
}
