package lifecycle

import (
	"context"
	"sync"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// quotaRecount is how long a tenant's counted active sandboxes are trusted
// as the base of an upper bound (see quotaCache).
const quotaRecount = time.Second

// quotaCache spares most creates the store's count of a tenant's active
// sandboxes (a scan of the tenant's index entries, which grows with the
// tenant's sandboxes) and the read of its quota, and lets a create hold the
// tenant's lock for the quota decision only, not for its store write
// (under load the writes queue, and a lock held across one made every
// other create of the tenant wait behind the whole queue).
//
// Per tenant it keeps the last count plus the sandboxes this server
// reserved since (inserted, or being inserted): an upper bound of the
// active ones, because everything else (stops, ends, deletes) only lowers
// the count. A create is accepted on the bound while it is under the
// quota and younger than quotaRecount; otherwise, and always before a
// QUOTA_EXCEEDED answer, the store is asked again, once the inserts in
// flight are done (so none is counted twice or missed). On one server the
// quota stays exact; several replicas (PostgreSQL) could each overshoot it
// by what the others inserted within quotaRecount, as they could already
// between their count and insert.
type quotaCache struct {
	mu      sync.Mutex
	done    *sync.Cond // signalled when an insert in flight ends
	tenants map[string]*quotaEntry
}

type quotaEntry struct {
	// count is the bound: the store's count at at, plus reservations since.
	limit, count int
	// pending are reservations whose insert has not ended yet.
	pending int
	at      time.Time
}

// reserveQuota reserves room for one more sandbox of the tenant, or fails
// with QUOTA_EXCEEDED. The caller inserts the sandbox, then calls release
// with whether it did (a failed or skipped insert gives the room back).
func (m *Manager) reserveQuota(ctx context.Context, tenantID string) (release func(inserted bool), err error) {
	mu := m.tenantLock(tenantID)
	mu.Lock()
	defer mu.Unlock()
	q := &m.quota
	q.mu.Lock()
	if q.tenants == nil {
		q.tenants = map[string]*quotaEntry{}
		q.done = sync.NewCond(&q.mu)
	}
	e := q.tenants[tenantID]
	if e == nil {
		e = &quotaEntry{}
		q.tenants[tenantID] = e
	}
	if e.at.IsZero() || time.Since(e.at) >= quotaRecount || e.count >= e.limit {
		// Count again, once this tenant's inserts in flight are done (no
		// new ones start: we hold the tenant's lock).
		for e.pending > 0 {
			q.done.Wait()
		}
		q.mu.Unlock()
		limit, n, err := m.countActive(ctx, tenantID)
		if err != nil {
			return nil, err
		}
		q.mu.Lock()
		e.limit, e.count, e.at = limit, n, time.Now()
	}
	if e.count >= e.limit {
		n, limit := e.count, e.limit
		q.mu.Unlock()
		err := sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonQuotaExceeded,
			"tenant has %d active sandboxes, its quota is %d: stop or wait for some, then retry", n, limit)
		err.RetryAfter = m.cfg.QuotaRetryAfter
		return nil, err
	}
	e.count++
	e.pending++
	q.mu.Unlock()
	return func(inserted bool) {
		q.mu.Lock()
		e.pending--
		if !inserted {
			e.count--
		}
		q.done.Broadcast()
		q.mu.Unlock()
	}, nil
}

// countActive reads the tenant's quota and its active sandboxes.
func (m *Manager) countActive(ctx context.Context, tenantID string) (limit, n int, err error) {
	limit = m.cfg.MaxSandboxesPerTenant
	if t, err := m.st.GetTenant(ctx, tenantID); err == nil && t.MaxSandboxes > 0 {
		limit = t.MaxSandboxes
	}
	n, err = m.st.CountActive(ctx, tenantID)
	return limit, n, err
}
