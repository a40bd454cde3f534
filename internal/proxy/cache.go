package proxy

import (
	"sync"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// recordTTL is how long the proxy trusts a sandbox record it read. Changes
// made through this server (ExposePort, UnexposePort) drop the entry at
// once; other replicas' changes and state changes are seen within it.
const recordTTL = time.Second

// maxCachedRecords bounds the cache; past it, it starts over.
const maxCachedRecords = 10000

// recordCache keeps running sandboxes' records for a moment, so that a
// burst of requests to one port reads the store once, not per request.
type recordCache struct {
	mu sync.Mutex
	m  map[string]cachedRecord
}

type cachedRecord struct {
	sb    *sandbox.Sandbox
	until time.Time
}

func (c *recordCache) get(id string, now time.Time) *sandbox.Sandbox {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || now.After(e.until) {
		return nil
	}
	return e.sb
}

// put caches sb if it runs: anything else answers 502 and needs a fresh
// look next time.
func (c *recordCache) put(sb *sandbox.Sandbox, now time.Time) {
	if sb.State != sandbox.StateRunning {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedRecords {
		c.m = map[string]cachedRecord{}
	}
	c.m[sb.ID] = cachedRecord{sb: sb, until: now.Add(recordTTL)}
}

func (c *recordCache) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}
