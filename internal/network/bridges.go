package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/network/nldump"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// A Linux bridge takes at most 1023 ports (BR_MAX_PORTS is 1024 and port
// number 0 is reserved), so the sandboxes of one server spread over several
// bridges: the main bridge Config.Bridge, which holds the gateway address
// and on which every rule is keyed, and overflow bridges, each connected to
// it by a veth pair, the trunk:
//
//	sandbox ports (isolated) ─ [Bridge]   ─ <Bridge>.t<n> (isolated)
//	                                             │ veth
//	sandbox ports (isolated) ─ [<Bridge>.b<n>] ─ <Bridge>.u<n> (not isolated)
//
// An isolated port forwards only to ports that are not isolated, and the
// bridge device itself is no port: a sandbox on an overflow bridge reaches
// only its uplink, whose frames reach only the main bridge's device, the
// host. No sandbox reaches another one at layer 2, on its bridge or across
// the trunk, and every sandbox packet enters the host through the main
// bridge (iifname Config.Bridge), so the rules of ruleset.go hold for all.
// Overflow bridges have no address and answer no ARP; what a sandbox
// sends to one of their own MACs is dropped (see ruleset.go).
//
// The derived names contain a '.', which no configured bridge name may
// contain, so the links of two servers can never collide as long as their
// bridge names differ (which the daemon's host-wide bridge lock ensures).

// bridgePorts is how many ports a bridge takes; tests lower it to reach
// the overflow bridges without a thousand namespaces.
var bridgePorts = 1023

// maxOverflow is how many overflow bridges a server can have: enough for
// every address of its subnet (each takes bridgePorts-1 sandboxes and its
// uplink), but at most half the main bridge's ports, which hold their
// trunks.
func maxOverflow(subnet netip.Prefix) int {
	hosts := max(1, 1<<(32-subnet.Bits())-3) // network, gateway, broadcast
	per := bridgePorts - 1
	return max(1, min((hosts+per-1)/per, per/2))
}

// capacity is how many sandboxes bridge n takes: the main bridge keeps a
// port for the trunk of every overflow bridge there may be, so that one
// can always be added; an overflow bridge keeps one for its uplink.
func capacity(subnet netip.Prefix, n int) int {
	if n == 0 {
		return bridgePorts - maxOverflow(subnet)
	}
	return bridgePorts - 1
}

// Names of the links of overflow bridge n (1, 2, ...) of bridge b.
func overflowName(b string, n int) string { return b + ".b" + strconv.Itoa(n) }
func trunkName(b string, n int) string    { return b + ".t" + strconv.Itoa(n) } // port of b
func uplinkName(b string, n int) string   { return b + ".u" + strconv.Itoa(n) } // port of overflow n

// BridgeNameLimit is the longest bridge name (Config.Bridge) a server with
// the given sandbox subnet (the zero Prefix: DefaultSubnet) can use: its
// overflow bridges are named "<bridge>.b<n>", and Linux takes at most 15
// characters in a link name.
func BridgeNameLimit(subnet netip.Prefix) int {
	if !subnet.IsValid() {
		subnet = DefaultSubnet
	}
	return 15 - len(overflowName("", maxOverflow(subnet)))
}

// overflowIndex returns n when name is overflow bridge n of b.
func overflowIndex(b, name string, subnet netip.Prefix) (int, bool) {
	s, ok := strings.CutPrefix(name, b+".b")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxOverflow(subnet) || strconv.Itoa(n) != s {
		return 0, false
	}
	return n, true
}

// overflowMAC is the fixed MAC of overflow bridge n: locally administered,
// never one of a sandbox (those start 02:5b), and no link ever sends from
// it (the bridge has no address).
func overflowMAC(subnet netip.Prefix, n int) net.HardwareAddr {
	b := subnet.Addr().As4()
	return net.HardwareAddr{0x02, 0x5c, b[0], b[1], byte(n >> 8), byte(n)}
}

// bridge is one bridge sandboxes hang off, and how many of them it holds
// (those whose veth is being deleted included).
type bridge struct {
	n    int // 0: the main bridge
	link netlink.Link
	used int
}

func (b *bridge) name() string { return b.link.Attrs().Name }

// noIPv6 turns off IPv6 on a link of ours: no address, no traffic.
func noIPv6(h *netlink.Handle, l netlink.Link) error {
	if err := h.LinkSetIP6AddrGenMode(l, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		return fmt.Errorf("%s: disable IPv6 addresses: %w", l.Attrs().Name, err)
	}
	err := os.WriteFile("/proc/sys/net/ipv6/conf/"+l.Attrs().Name+"/disable_ipv6", []byte("1\n"), 0o644)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("%s: disable IPv6: %w", l.Attrs().Name, err)
	}
	return nil
}

// ensureOverflow creates overflow bridge n of main and its trunk as far as
// they are missing, and (re)applies their settings: a restart finds them
// as they were, a trunk deleted by hand comes back. Whatever it created is
// deleted again when it fails.
func ensureOverflow(h *netlink.Handle, cfg Config, main netlink.Link, n int) (br netlink.Link, err error) {
	name, trunk, uplink := overflowName(cfg.Bridge, n), trunkName(cfg.Bridge, n), uplinkName(cfg.Bridge, n)
	var created []string
	defer func() {
		if err != nil {
			for _, c := range created {
				detach(h, c)
			}
		}
	}()
	mtu := main.Attrs().MTU
	if br, err = linkOrNil(h, name); err != nil {
		return nil, err
	}
	if br == nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		attrs.MTU = mtu
		attrs.HardwareAddr = overflowMAC(cfg.Subnet, n)
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return nil, fmt.Errorf("create overflow bridge %s: %w", name, err)
		}
		created = append(created, name)
		if br, err = h.LinkByName(name); err != nil {
			return nil, err
		}
	}
	if br.Type() != "bridge" {
		return nil, fmt.Errorf("link %s exists and is a %s, not sbx's overflow bridge; delete it or pick another bridge name", name, br.Type())
	}
	if err := noIPv6(h, br); err != nil {
		return nil, err
	}
	// The bridge has no address, but the host would answer a sandbox's
	// ARP request for the gateway through it, too, with the bridge's MAC:
	// what the sandbox then sends there is dropped (ruleset.go).
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+name+"/arp_ignore", []byte("8\n"), 0o644); err != nil {
		return nil, fmt.Errorf("overflow bridge %s: turn off ARP replies: %w", name, err)
	}

	t, err := linkOrNil(h, trunk)
	if err != nil {
		return nil, err
	}
	if t == nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = trunk
		attrs.MTU = mtu
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: uplink}); err != nil {
			return nil, fmt.Errorf("create trunk %s-%s: %w", trunk, uplink, err)
		}
		created = append(created, trunk) // its peer goes with it
		if t, err = h.LinkByName(trunk); err != nil {
			return nil, err
		}
	}
	u, err := h.LinkByName(uplink)
	if err != nil || t.Type() != "veth" || u.Type() != "veth" {
		return nil, fmt.Errorf("links %s and %s are not sbx's trunk (a veth pair) of overflow bridge %s; delete them", trunk, uplink, name)
	}
	for _, p := range []struct {
		port, master netlink.Link
		isolated     bool
	}{
		// Isolated on the main bridge: what comes up the trunk reaches
		// the host, never a sandbox port of the main bridge. Not isolated
		// on the overflow bridge: its isolated sandbox ports reach only it.
		{t, main, true},
		{u, br, false},
	} {
		if err := noIPv6(h, p.port); err != nil {
			return nil, err
		}
		if p.port.Attrs().MasterIndex != p.master.Attrs().Index {
			if err := h.LinkSetMasterByIndex(p.port, p.master.Attrs().Index); err != nil {
				return nil, fmt.Errorf("attach trunk %s to %s: %w", p.port.Attrs().Name, p.master.Attrs().Name, err)
			}
		}
		if err := h.LinkSetIsolated(p.port, p.isolated); err != nil {
			return nil, fmt.Errorf("trunk port %s: %w", p.port.Attrs().Name, err)
		}
		if err := h.LinkSetUp(p.port); err != nil {
			return nil, err
		}
	}
	if err := h.LinkSetUp(br); err != nil {
		return nil, err
	}
	return br, nil
}

// linkOrNil returns the link called name, or nil when there is none.
func linkOrNil(h *netlink.Handle, name string) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	return l, err
}

// removeOverflow deletes overflow bridge n's trunk (its peer goes with it)
// and the bridge; missing links are fine.
func removeOverflow(h *netlink.Handle, b string, n int) error {
	return errors.Join(detach(h, trunkName(b, n)), detach(h, overflowName(b, n)))
}

// recoverBridges finds the overflow bridges an earlier run made, checks
// them and their trunks, and counts the sandboxes on each bridge.
func (m *Manager) recoverBridges(atts []*Attachment) error {
	links, err := nldump.Retry(m.nl.LinkList)
	if err != nil {
		return sandbox.Internal("list links: %w", err)
	}
	var ns []int
	for _, l := range links {
		if n, ok := overflowIndex(m.cfg.Bridge, l.Attrs().Name, m.cfg.Subnet); ok {
			ns = append(ns, n)
		}
	}
	sort.Ints(ns)
	for _, n := range ns {
		br, err := ensureOverflow(m.nl, m.cfg, m.bridges[0].link, n)
		if err != nil {
			return sandbox.FailedPrecondition(sandbox.ReasonNetworkSetup, "network bridge: %w", err)
		}
		m.bridges = append(m.bridges, &bridge{n: n, link: br})
	}
	for _, a := range atts {
		// A sandbox on a bridge that is gone has lost its veth with it:
		// only its Teardown is left, which needs no port.
		if b := m.bridgeNamed(a.Bridge); b != nil {
			b.used++
		}
	}
	return nil
}

// bridgeNamed returns our bridge called name, or nil.
func (m *Manager) bridgeNamed(name string) *bridge {
	for _, b := range m.bridges {
		if b.name() == name {
			return b
		}
	}
	return nil
}

// pickBridge returns the first bridge with a free port for a sandbox, the
// main one first, and makes a new overflow bridge when all are full.
func (m *Manager) pickBridge() (*bridge, error) {
	for _, b := range m.bridges {
		if b.used < capacity(m.cfg.Subnet, b.n) {
			return b, nil
		}
	}
	n := 1 // the lowest free number, so names stay short
	for _, b := range m.bridges[1:] {
		if b.n == n {
			n++
		}
	}
	if n > maxOverflow(m.cfg.Subnet) {
		return nil, sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonSubnetExhausted,
			"bridge %s and its %d overflow bridges have no free port; stop some sandboxes", m.cfg.Bridge, len(m.bridges)-1)
	}
	br, err := ensureOverflow(m.nl, m.cfg, m.bridges[0].link, n)
	if errors.Is(err, unix.EXFULL) {
		return nil, sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonSubnetExhausted,
			"bridge %s has no free port for the trunk of a new overflow bridge (links other than sbx's take its ports?); stop some sandboxes: %w", m.cfg.Bridge, err)
	}
	if err != nil {
		return nil, sandbox.Errorf(sandbox.ErrInternal, sandbox.ReasonNetworkSetup, "network bridge: %w", err)
	}
	b := &bridge{n: n, link: br}
	m.bridges = append(m.bridges, b)
	sort.Slice(m.bridges, func(i, j int) bool { return m.bridges[i].n < m.bridges[j].n })
	return b, nil
}
