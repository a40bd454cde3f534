package network

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/network/nldump"
)

// Source NAT without masquerade. A sandbox's packets that leave the host
// through another link get that link's address as their source. The
// kernel's masquerade does this, but the kernel then watches every link:
// whenever any link on the host goes down, it queues a walk of the whole
// conntrack table (262144 buckets on a host with 4 GiB or more) for the
// entries that went out through it. Every deleted sandbox's veth is such a
// link, so at 100 sandboxes a second those walks took 1.5 % of the host's
// CPU (perf, 2026-11-27), for sandboxes that had sent nothing.
//
// So the post chain does "snat to oif map @uplinks" instead: the map holds
// for each link the address masquerade would pick for it (uplinkAddrs),
// and a watcher of the host's address and route changes keeps it so
// (startUplinkWatch). A link without an IPv4 address of global scope gets
// the host's first, as under masquerade (element anyLink, a second rule).
// Unlike masquerade, a removed address does not drop the connections that
// were rewritten to it at once; with the address gone they carry nothing
// and time out.

// uplinkRetry is how long the watcher waits before it subscribes again
// after a failed subscription.
const uplinkRetry = time.Second

// uplinksMap is the name of the map from output link index to address.
const uplinksMap = "uplinks"

// anyLink is the uplinks map's key of the address for links that have
// none of their own: no link has index 0.
const anyLink = 0

// uplinkAddrs returns, keyed by link index, the address that masquerade
// would give what leaves through each link: of the link's primary IPv4
// addresses of global scope, the first whose subnet holds the gateway of
// a route through the link (the kernel picks by the packet's next hop;
// per link that is its gateways), else the first. Under anyLink it puts
// what masquerade gives a link without such an address: the first one of
// the host's, in link order (inet_select_addr). routed reports whether
// routes mattered: only for a link with more than one such address, and
// only then are the routes listed (a host may have many).
func uplinkAddrs(h *netlink.Handle) (addrs map[int]netip.Addr, routed bool, err error) {
	list, err := nldump.Retry(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, false, fmt.Errorf("list addresses: %w", err)
	}
	candidates := map[int][]netip.Prefix{} // by link, in the kernel's order
	var fallback netip.Addr
	for _, a := range list {
		if a.Scope != unix.RT_SCOPE_UNIVERSE || a.Flags&unix.IFA_F_SECONDARY != 0 || a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		candidates[a.LinkIndex] = append(candidates[a.LinkIndex], netip.PrefixFrom(ip, ones))
		if !fallback.IsValid() {
			fallback = ip
		}
	}
	for _, c := range candidates {
		routed = routed || len(c) > 1
	}
	gateways := map[int][]netip.Addr{}
	if routed {
		routes, err := nldump.Retry(func() ([]netlink.Route, error) {
			return h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return nil, false, fmt.Errorf("list routes: %w", err)
		}
		addGW := func(link int, ip []byte) {
			if gw, ok := netip.AddrFromSlice(ip); ok && len(candidates[link]) > 1 {
				gateways[link] = append(gateways[link], gw.Unmap())
			}
		}
		for _, r := range routes {
			addGW(r.LinkIndex, r.Gw)
			for _, nh := range r.MultiPath {
				addGW(nh.LinkIndex, nh.Gw)
			}
		}
	}
	addrs = map[int]netip.Addr{}
	for link, c := range candidates {
		addrs[link] = c[0].Addr()
	pick:
		for _, p := range c {
			for _, gw := range gateways[link] {
				if p.Masked().Contains(gw) {
					addrs[link] = p.Addr()
					break pick
				}
			}
		}
	}
	if fallback.IsValid() {
		addrs[anyLink] = fallback
	}
	return addrs, routed, nil
}

// uplinkElements renders addrs as elements of the uplinks map.
func uplinkElements(addrs map[int]netip.Addr) []nftables.SetElement {
	els := make([]nftables.SetElement, 0, len(addrs))
	for idx, a := range addrs {
		k := make([]byte, 4)
		binary.NativeEndian.PutUint32(k, uint32(idx)) // meta oif is in host byte order
		v := a.As4()
		els = append(els, nftables.SetElement{Key: k, Val: v[:]})
	}
	return els
}

// setUplinks queues the replacement of the uplinks map's elements by addrs.
func (rs *ruleset) setUplinks(c *nftables.Conn, addrs map[int]netip.Addr) error {
	c.FlushSet(rs.uplinks)
	if len(addrs) == 0 {
		return nil
	}
	return c.SetAddElements(rs.uplinks, uplinkElements(addrs))
}

// uplinkState is a computed uplinks map and whether it depended on routes.
type uplinkState struct {
	addrs  map[int]netip.Addr
	routed bool
}

// uplinkWatch is the manager's watcher of address changes.
type uplinkWatch struct {
	stop chan struct{}
	done chan struct{}
	once sync.Once
	// last is the map as last written; err the last failure to write it.
	last map[int]netip.Addr
	err  error
	// routed: last depended on routes (a link with several addresses), so
	// route changes matter. Read and written by the watcher only.
	routed bool
}

// startUplinkWatch subscribes to the address and route changes of the
// network namespace the manager was made in (the calling thread's) and
// keeps the uplinks map right from then on. The map was filled by recover;
// a change between that and the subscription is caught by the sync that
// follows it.
func (m *Manager) startUplinkWatch() error {
	ns, err := netns.Get()
	if err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	w := &uplinkWatch{stop: make(chan struct{}), done: make(chan struct{}),
		last: m.uplinksAtStart.addrs, routed: m.uplinksAtStart.routed}
	sub, err := subscribeChanges(ns)
	if err != nil {
		ns.Close()
		return err
	}
	m.uplinks = w
	go func() {
		defer close(w.done)
		defer ns.Close()
		// retry is set while the last sync failed: it is tried again
		// every uplinkRetry until it succeeds.
		var retry <-chan time.Time
		resync := func() {
			retry = nil
			if !m.syncUplinks() {
				retry = time.After(uplinkRetry)
			}
		}
		resync()
		for {
			select {
			case <-w.stop:
				sub.close()
				return
			case <-retry:
				resync()
				continue
			case u, ok := <-sub.addrs:
				if ok {
					if sub.drain(ipv4Addr(u), w.routed) {
						resync()
					}
					continue
				}
			case r, ok := <-sub.routes:
				if ok {
					if sub.drain(r.Family == netlink.FAMILY_V4 && w.routed, w.routed) {
						resync()
					}
					continue
				}
			}
			// A subscription ended (a receive error, e.g. its buffer
			// overran): subscribe again, then sync, as at the start.
			sub.close()
			for {
				if sub, err = subscribeChanges(ns); err == nil {
					break
				}
				select {
				case <-w.stop:
					return
				case <-time.After(uplinkRetry):
				}
			}
			resync()
		}
	}()
	return nil
}

// ipv4Addr reports whether u is about an IPv4 address. IPv6 changes (the
// host's own, and the multicast routes each new sandbox veth gets) do not
// wake the watcher.
func ipv4Addr(u netlink.AddrUpdate) bool { return u.LinkAddress.IP.To4() != nil }

// changes is a subscription to a namespace's IPv4 address and route
// changes. Each channel is closed when its subscription ends.
type changes struct {
	addrs  chan netlink.AddrUpdate
	routes chan netlink.RouteUpdate
	cancel chan struct{}
}

func subscribeChanges(ns netns.NsHandle) (*changes, error) {
	c := &changes{
		addrs:  make(chan netlink.AddrUpdate, 64),
		routes: make(chan netlink.RouteUpdate, 64),
		cancel: make(chan struct{}),
	}
	err := netlink.AddrSubscribeWithOptions(c.addrs, c.cancel, netlink.AddrSubscribeOptions{Namespace: &ns, ReceiveBufferSize: 1 << 20})
	if err != nil {
		return nil, fmt.Errorf("subscribe to address changes: %w", err)
	}
	err = netlink.RouteSubscribeWithOptions(c.routes, c.cancel, netlink.RouteSubscribeOptions{Namespace: &ns, ReceiveBufferSize: 1 << 20})
	if err != nil {
		close(c.cancel)
		return nil, fmt.Errorf("subscribe to route changes: %w", err)
	}
	return c, nil
}

func (c *changes) close() { close(c.cancel) }

// drain takes every change already queued (one sync covers them all) and
// reports whether any of them, or the one taken before (v4), matters: an
// IPv4 address change, or with routed an IPv4 route change. A closed
// channel ends it; the watcher's next receive sees it.
func (c *changes) drain(v4, routed bool) bool {
	for {
		select {
		case u, ok := <-c.addrs:
			if !ok {
				return v4
			}
			v4 = v4 || ipv4Addr(u)
		case r, ok := <-c.routes:
			if !ok {
				return v4
			}
			v4 = v4 || (routed && r.Family == netlink.FAMILY_V4)
		default:
			return v4
		}
	}
}

// syncUplinks writes the host's current addresses into the uplinks map if
// they changed since the last write, and reports whether the map is right.
// A failure is kept for UplinkError; the watcher retries it.
func (m *Manager) syncUplinks() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.uplinks
	addrs, routed, err := uplinkAddrs(m.nl)
	if err == nil {
		w.routed = routed
	}
	if err == nil && w.err == nil && sameUplinks(addrs, w.last) {
		return true
	}
	if err == nil {
		if err = m.rs.setUplinks(m.nft, addrs); err == nil {
			err = m.nft.Flush()
		}
	}
	if err != nil {
		if w.err == nil {
			m.cfg.Logger.Warn("sandbox traffic may leave with an old source address until this is retried", "error", err)
		}
		w.err = fmt.Errorf("update the source addresses of sandbox traffic: %w", err)
		return false
	}
	if w.last != nil || w.err != nil {
		m.cfg.Logger.Info("source addresses of sandbox traffic updated", "by_link", fmt.Sprint(addrs))
	}
	w.last, w.err = addrs, nil
	return true
}

func sameUplinks(a, b map[int]netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// UplinkError is the last failure to follow an address change of the host
// into the rewriting of sandbox traffic, nil once a later one succeeded.
func (m *Manager) UplinkError() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.uplinks == nil {
		return nil
	}
	return m.uplinks.err
}

// stopUplinkWatch ends the watcher and waits for it.
func (m *Manager) stopUplinkWatch() {
	if w := m.uplinks; w != nil {
		w.once.Do(func() { close(w.stop) })
		<-w.done
	}
}

// uplinkRules are the post chain's rules: packets from the subnet that
// leave through another link than the bridge get that link's address, or
// the host's first (anyLink) when the link has none.
func (rs *ruleset) uplinkRules(c *nftables.Conn, post *nftables.Chain) {
	fromSandboxes := cat(isIPv4(), ipIn(offSaddr, rs.cfg.Subnet), oifIsNot(rs.cfg.Bridge))
	rs.rule(c, rs.inet, post, fromSandboxes, metaOIF(), lookupInto(rs.uplinks), snatTo())
	rs.rule(c, rs.inet, post, fromSandboxes, reg1Uint32(anyLink), lookupInto(rs.uplinks), snatTo())
}
