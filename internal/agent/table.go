package agent

import (
	"encoding/hex"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// maxEndedBytes bounds the output kept for ended processes in total, so that
// an idle agent does not sit on maxEnded full rings.
const maxEndedBytes = 8 << 20

// processTable holds the execs by id: all running ones, and the most recent
// ended ones (at most maxEnded, for at most retention, with at most
// maxEndedBytes of output) so that a client can still attach to read how
// they ended.
type processTable struct {
	maxRunning int
	maxEnded   int
	retention  time.Duration

	mu         sync.Mutex
	byID       map[string]*process
	ended      []*process // oldest first
	endedBytes int        // output held by the rings of ended
}

func newProcessTable(maxRunning, maxEnded int, retention time.Duration) *processTable {
	return &processTable{maxRunning: maxRunning, maxEnded: maxEnded, retention: retention, byID: map[string]*process{}}
}

// newExecID returns 16 random hex digits. getrandom(2) directly: the
// agent does not link crypto/rand, whose set-up (a FIPS DRBG and its
// self-checks) costs every starting agent page faults.
func newExecID() string {
	var b [8]byte
	for n := 0; n < len(b); {
		m, err := unix.Getrandom(b[n:], 0)
		if err != nil && err != unix.EINTR {
			panic("getrandom: " + err.Error())
		}
		n += max(m, 0)
	}
	return hex.EncodeToString(b[:])
}

// reserve checks the bound on running processes and adds p.
func (t *processTable) add(p *process) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked(time.Now())
	if len(t.byID)-len(t.ended) >= t.maxRunning {
		return sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonQuotaExceeded, "the sandbox runs %d processes started by exec already; wait for some to end", t.maxRunning)
	}
	t.byID[p.id] = p
	return nil
}

// remove forgets p (it failed to start).
func (t *processTable) remove(p *process) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byID, p.id)
}

// markEnded is p's onDone callback.
func (t *processTable) markEnded(p *process) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byID[p.id]; !ok {
		return
	}
	t.ended = append(t.ended, p)
	t.endedBytes += p.ring.bytes()
	t.pruneLocked(time.Now())
}

func (t *processTable) pruneLocked(now time.Time) {
	for len(t.ended) > 0 && (len(t.ended) > t.maxEnded || t.endedBytes > maxEndedBytes || now.Sub(t.ended[0].status().At) > t.retention) {
		t.endedBytes -= t.ended[0].ring.bytes()
		delete(t.byID, t.ended[0].id)
		t.ended[0] = nil
		t.ended = t.ended[1:]
	}
	if len(t.ended) == 0 {
		t.ended, t.endedBytes = nil, 0
	}
}

func (t *processTable) get(id string) (*process, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked(time.Now())
	if p, ok := t.byID[id]; ok {
		return p, nil
	}
	return nil, sandbox.NotFound(sandbox.ReasonProcessNotFound, "no process with exec id %q in the sandbox; it never ran or ended too long ago", id)
}

// list returns every known process, oldest first.
func (t *processTable) list() []*process {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked(time.Now())
	out := make([]*process, 0, len(t.byID))
	for _, p := range t.byID {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].started.Before(out[j].started) })
	return out
}
