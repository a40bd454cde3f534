package proxy

import (
	"context"
	"net"
	"sync"
)

// portKey names one published port of one sandbox.
type portKey struct {
	id   string
	port int
}

// maxClosedMarks bounds tracker.closedAt; past it the marks are dropped,
// which only reopens the narrow race they guard against.
const maxClosedMarks = 4096

// tracker holds every open connection the proxy made to sandboxes, so that
// unpublishing a port (or changing its visibility) can cut the requests and
// WebSockets that were let in under the old rules.
type tracker struct {
	mu    sync.Mutex
	epoch uint64
	// closedAt is the epoch at which each key's connections were last cut.
	closedAt map[portKey]uint64
	conns    map[portKey]map[*trackedConn]struct{}
	// tunnels are raw TCP (port-forward) connections, with their sandbox:
	// cut when it ends (closeSandbox) or by Close.
	tunnels map[net.Conn]string
}

func newTracker() *tracker {
	return &tracker{closedAt: map[portKey]uint64{}, conns: map[portKey]map[*trackedConn]struct{}{}, tunnels: map[net.Conn]string{}}
}

// admitted is the context value that says when a request passed its
// checks, so that a connection dialed for it after its port was cut is
// closed at once.
type admittedKey struct{}

// admit records in ctx that its request passed its checks now.
func (t *tracker) admit(ctx context.Context) context.Context {
	t.mu.Lock()
	e := t.epoch
	t.mu.Unlock()
	return context.WithValue(ctx, admittedKey{}, e)
}

// add tracks c, dialed for k; it returns false (and c stays untracked) if
// k was cut after the request that dialed it was admitted.
func (t *tracker) add(ctx context.Context, k portKey, c net.Conn) (net.Conn, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := ctx.Value(admittedKey{}).(uint64); ok && t.closedAt[k] > e {
		return nil, false
	}
	tc := &trackedConn{Conn: c, t: t, key: k}
	set := t.conns[k]
	if set == nil {
		set = map[*trackedConn]struct{}{}
		t.conns[k] = set
	}
	set[tc] = struct{}{}
	return tc, true
}

func (t *tracker) remove(c *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if set := t.conns[c.key]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(t.conns, c.key)
		}
	}
}

// cut closes every connection to k, open or idle.
func (t *tracker) cut(k portKey) {
	t.mu.Lock()
	t.epoch++
	if len(t.closedAt) >= maxClosedMarks {
		clear(t.closedAt)
	}
	t.closedAt[k] = t.epoch
	set := t.conns[k]
	delete(t.conns, k)
	t.mu.Unlock()
	for c := range set {
		c.Conn.Close()
	}
}

func (t *tracker) addTunnel(id string, c net.Conn) {
	t.mu.Lock()
	t.tunnels[c] = id
	t.mu.Unlock()
}

func (t *tracker) removeTunnel(c net.Conn) {
	t.mu.Lock()
	delete(t.tunnels, c)
	t.mu.Unlock()
}

// closeSandbox closes every connection into sandbox id: proxied requests,
// WebSockets and tunnels. When a sandbox ends its network namespace goes
// away without a reset reaching the host, so these would otherwise hang
// until TCP gives up.
func (t *tracker) closeSandbox(id string) {
	t.mu.Lock()
	var keys []portKey
	for k := range t.conns {
		if k.id == id {
			keys = append(keys, k)
		}
	}
	var tunnels []net.Conn
	for c, tid := range t.tunnels {
		if tid == id {
			tunnels = append(tunnels, c)
			delete(t.tunnels, c)
		}
	}
	t.mu.Unlock()
	for _, k := range keys {
		t.cut(k)
	}
	for _, c := range tunnels {
		c.Close()
	}
}

// closeAll closes every tracked connection.
func (t *tracker) closeAll() {
	t.mu.Lock()
	var all []net.Conn
	for _, set := range t.conns {
		for c := range set {
			all = append(all, c.Conn)
		}
	}
	for c := range t.tunnels {
		all = append(all, c)
	}
	clear(t.conns)
	clear(t.tunnels)
	t.mu.Unlock()
	for _, c := range all {
		c.Close()
	}
}

// trackedConn leaves the tracker when closed.
type trackedConn struct {
	net.Conn
	t    *tracker
	key  portKey
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.t.remove(c) })
	return c.Conn.Close()
}
