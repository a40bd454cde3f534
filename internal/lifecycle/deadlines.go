package lifecycle

import (
	"container/heap"
	"slices"
	"sync"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// deadlines is the in-memory schedule of the live sandboxes' ends: their
// lifetimes (a min-heap by ExpiresAt) and their sessions (ids by session),
// so that the once-a-second sweep costs what is due, not a read of every
// live record. It is fed by every path that makes, changes or ends a live
// record on this server: insert, warm claim, transition, Delete, Recover
// (the full read at start), and the safety sweep, which re-reads the store
// every Config.SafetySweepInterval for what this server did not see (other
// replicas' creates, stops that failed after their entry was popped).
//
// An entry can outlive its sandbox (the safety sweep read a record just
// before it ended): it then costs one harmless stop attempt when due.
type deadlines struct {
	mu        sync.Mutex
	byID      map[string]*deadline
	heap      deadlineHeap
	bySession map[string]map[string]struct{}
}

// deadline is one tracked live sandbox. index is its place in the heap,
// or -1 when it has no lifetime.
type deadline struct {
	id, session string
	at          time.Time
	index       int
}

func newDeadlines() *deadlines {
	return &deadlines{byID: map[string]*deadline{}, bySession: map[string]map[string]struct{}{}}
}

// track adds or updates sb's entry when sb is live and not stopping
// (PENDING, CREATING or RUNNING), and removes it otherwise.
func (d *deadlines) track(sb *sandbox.Sandbox) {
	if !slices.Contains(active, sb.State) {
		d.untrack(sb.ID)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.byID[sb.ID]
	if !ok {
		e = &deadline{id: sb.ID, index: -1}
		d.byID[sb.ID] = e
	}
	if e.session != sb.SessionID {
		d.leaveSessionLocked(e)
		e.session = sb.SessionID
		if e.session != "" {
			ids := d.bySession[e.session]
			if ids == nil {
				ids = map[string]struct{}{}
				d.bySession[e.session] = ids
			}
			ids[e.id] = struct{}{}
		}
	}
	e.at = sb.ExpiresAt
	switch {
	case e.at.IsZero() && e.index >= 0:
		heap.Remove(&d.heap, e.index)
	case !e.at.IsZero() && e.index < 0:
		heap.Push(&d.heap, e)
	case !e.at.IsZero():
		heap.Fix(&d.heap, e.index)
	}
}

// untrack removes id's entry, if any.
func (d *deadlines) untrack(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.byID[id]; ok {
		d.removeLocked(e)
	}
}

func (d *deadlines) removeLocked(e *deadline) {
	delete(d.byID, e.id)
	if e.index >= 0 {
		heap.Remove(&d.heap, e.index)
	}
	d.leaveSessionLocked(e)
}

func (d *deadlines) leaveSessionLocked(e *deadline) {
	if e.session == "" {
		return
	}
	if ids := d.bySession[e.session]; ids != nil {
		delete(ids, e.id)
		if len(ids) == 0 {
			delete(d.bySession, e.session)
		}
	}
}

// due removes and returns the ids whose lifetime ends at or before now.
func (d *deadlines) due(now time.Time) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for len(d.heap) > 0 && !now.Before(d.heap[0].at) {
		e := d.heap[0]
		d.removeLocked(e)
		out = append(out, e.id)
	}
	return out
}

// sessions returns the sessions that tracked sandboxes belong to.
func (d *deadlines) sessions() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.bySession))
	for s := range d.bySession {
		out = append(out, s)
	}
	return out
}

// takeSession removes and returns the tracked sandboxes of session id.
func (d *deadlines) takeSession(id string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for sb := range d.bySession[id] {
		out = append(out, sb)
	}
	for _, sb := range out {
		d.removeLocked(d.byID[sb])
	}
	return out
}

// len is the number of tracked sandboxes.
func (d *deadlines) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.byID)
}

// deadlineHeap orders entries by deadline (container/heap).
type deadlineHeap []*deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *deadlineHeap) Push(x any) {
	e := x.(*deadline)
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *deadlineHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}
