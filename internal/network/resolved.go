package network

import (
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Bounds of the addresses sbx's resolver opens for a sandbox with AllowNames.
const (
	// MaxResolvedPerSandbox bounds the entries of one sandbox's set: a
	// sandbox that resolves names with ever-changing addresses cannot make
	// the firewall grow without limit. AllowResolved fails once it is full
	// of entries that have not yet expired.
	MaxResolvedPerSandbox = 1024
	// MaxResolvedTTL bounds how long one entry lives.
	MaxResolvedTTL = 24 * time.Hour
	// maxAddrsPerCall bounds the addresses of one AllowResolved call.
	maxAddrsPerCall = 64
	// hostAddrsTTL is how long the host's address list is cached.
	hostAddrsTTL = time.Second
)

// resolver is the part of Manager that sbx's resolver uses on every query.
// It has locks of its own, so that DNS never waits for a Setup's netlink
// work under Manager.mu.
type resolver struct {
	idxMu  sync.RWMutex
	byAddr map[netip.Addr]lookupEntry
	names  map[string]bool // sandbox id -> its policy has AllowNames

	resMu     sync.Mutex
	nft       *nftables.Conn                      // its own: Conn batches are per connection
	entries   map[string]map[netip.Addr]time.Time // sandbox id -> address -> expiry
	hostAddrs []netip.Addr
	hostAt    time.Time
}

type lookupEntry struct {
	id     string
	policy Policy
}

// index records a's address for Lookup, and forgets what an earlier
// sandbox of the same id had resolved (its set was new-made empty).
func (r *resolver) index(a *Attachment) {
	r.idxMu.Lock()
	r.byAddr[a.Addr] = lookupEntry{id: a.SandboxID, policy: a.Policy}
	r.names[a.SandboxID] = len(a.Policy.AllowNames) > 0
	r.idxMu.Unlock()
	r.resMu.Lock()
	delete(r.entries, a.SandboxID)
	r.resMu.Unlock()
}

func (r *resolver) unindex(a *Attachment) {
	r.idxMu.Lock()
	if e, ok := r.byAddr[a.Addr]; ok && e.id == a.SandboxID {
		delete(r.byAddr, a.Addr)
	}
	delete(r.names, a.SandboxID)
	r.idxMu.Unlock()
	r.resMu.Lock()
	delete(r.entries, a.SandboxID)
	r.resMu.Unlock()
}

// Lookup returns the sandbox that has addr and its policy: how sbx's
// resolver tells which sandbox sent a query (source addresses are pinned
// at the bridge port, so they cannot be forged). It takes a read lock only.
func (m *Manager) Lookup(addr netip.Addr) (sandboxID string, p Policy, ok bool) {
	m.res.idxMu.RLock()
	e, ok := m.res.byAddr[addr.Unmap()]
	m.res.idxMu.RUnlock()
	return e.id, e.policy, ok
}

// AllowResolved opens addrs to the sandbox, whose policy must have
// AllowNames, for at least ttl: its resolver calls it with the A records of
// an allowed name before it answers, so that the connection that follows
// the answer is allowed. Addresses the sandbox may never reach whatever
// DNS says are skipped silently: other than IPv4, the ranges blocked by
// default (private, link-local, loopback, multicast...), the sandbox
// subnet, Config.HostBlock and the host's own addresses. Entries time out
// in the kernel; an address that already has ttl left is not touched.
// It fails with ErrResourceExhausted once the sandbox has
// MaxResolvedPerSandbox live entries, ErrNotFound for an unknown sandbox
// and ErrFailedPrecondition when its policy has no AllowNames.
func (m *Manager) AllowResolved(sandboxID string, addrs []netip.Addr, ttl time.Duration) error {
	if len(addrs) > maxAddrsPerCall {
		addrs = addrs[:maxAddrsPerCall]
	}
	ttl = min(max(ttl, time.Second), MaxResolvedTTL)
	r := &m.res
	r.idxMu.RLock()
	names, ok := r.names[sandboxID]
	r.idxMu.RUnlock()
	if !ok {
		return sandbox.NotFound(sandbox.ReasonSandboxNotFound, "sandbox %q has no network", sandboxID)
	}
	if !names {
		return sandbox.FailedPrecondition(sandbox.ReasonInvalidSpec, "sandbox %q has no allow_names, so no set of resolved addresses", sandboxID)
	}
	r.resMu.Lock()
	defer r.resMu.Unlock()
	now := time.Now()
	host := r.hostAddresses(now)
	have := r.entries[sandboxID]
	if have == nil {
		have = map[netip.Addr]time.Time{}
		r.entries[sandboxID] = have
	}
	// Kernel entries live a quarter longer than asked, so that the next
	// answers within that quarter need no firewall change at all.
	timeout := min(ttl+ttl/4, MaxResolvedTTL)
	set := &nftables.Set{Table: m.rs.inet, Name: resolvedSet(key(sandboxID)), KeyType: nftables.TypeIPAddr, HasTimeout: true}
	var add []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if !m.resolvable(a, host) || have[a].Sub(now) >= ttl || contains(add, a) {
			continue
		}
		add = append(add, a)
	}
	if len(add) == 0 {
		return nil
	}
	if len(have)+len(add) > MaxResolvedPerSandbox {
		for a, exp := range have {
			if !exp.After(now) {
				delete(have, a)
			}
		}
		if len(have)+len(add) > MaxResolvedPerSandbox {
			return sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonQuotaExceeded,
				"sandbox %q has %d resolved addresses open, the maximum; they expire with their DNS TTLs", sandboxID, len(have))
		}
	}
	// add, delete, add in one transaction: the first add makes sure the
	// element exists (adding an existing one is a no-op, and some kernels
	// then keep its old timeout), so that the delete cannot fail and the
	// last add sets the new timeout.
	for _, a := range add {
		el := []nftables.SetElement{{Key: ip4Key(a), Timeout: timeout}}
		if err := r.nft.SetAddElements(set, el); err != nil {
			return sandbox.Internal("resolved set of sandbox %q: %w", sandboxID, err)
		}
		if err := r.nft.SetDeleteElements(set, []nftables.SetElement{{Key: ip4Key(a)}}); err != nil {
			return sandbox.Internal("resolved set of sandbox %q: %w", sandboxID, err)
		}
		if err := r.nft.SetAddElements(set, el); err != nil {
			return sandbox.Internal("resolved set of sandbox %q: %w", sandboxID, err)
		}
	}
	if err := r.nft.Flush(); err != nil {
		// Most likely the sandbox was torn down meanwhile, set and all.
		return sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonNetworkSetup, "open resolved addresses of sandbox %q: %w", sandboxID, err)
	}
	for _, a := range add {
		have[a] = now.Add(timeout)
	}
	return nil
}

func contains(s []netip.Addr, a netip.Addr) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

// resolvable reports whether a name's address may be opened: never what
// the default policy blocks, the sandboxes' subnet, HostBlock or the host.
func (m *Manager) resolvable(a netip.Addr, host []netip.Addr) bool {
	if !a.Is4() || a.IsUnspecified() || m.cfg.Subnet.Contains(a) {
		return false
	}
	for _, p := range blockedByDefault {
		if p.Contains(a) {
			return false
		}
	}
	for _, r := range m.hostBlock {
		if r.Contains(a) {
			return false
		}
	}
	return !contains(host, a)
}

// hostAddresses returns the host's IPv4 addresses, cached for a second.
// (Traffic to them takes the input path, where the resolved sets are not
// consulted at all; this keeps them out of the sets too.)
func (r *resolver) hostAddresses(now time.Time) []netip.Addr {
	if now.Sub(r.hostAt) < hostAddrsTTL {
		return r.hostAddrs
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return r.hostAddrs
	}
	r.hostAddrs = r.hostAddrs[:0]
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			r.hostAddrs = append(r.hostAddrs, ip.Unmap())
		}
	}
	r.hostAt = now
	return r.hostAddrs
}
