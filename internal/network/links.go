package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/network/nldump"
)

// sandboxLink is the name of the veth end inside the sandbox.
const sandboxLink = "eth0"

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(bits, 32)}
}

// ensureBridge creates the bridge with the gateway address if needed and
// brings it up. It fails when another link already routes the subnet, which
// would make the sandboxes' traffic go somewhere else.
func ensureBridge(h *netlink.Handle, cfg Config) (link netlink.Link, err error) {
	br, err := h.LinkByName(cfg.Bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, err
		}
		defer func() { // a failed New leaves no bridge it made behind
			if err != nil && br != nil {
				h.LinkDel(br)
			}
		}()
		attrs := netlink.NewLinkAttrs()
		attrs.Name = cfg.Bridge
		// A fixed MAC: otherwise the bridge takes the lowest MAC of its
		// ports and changes it as sandboxes come and go.
		attrs.HardwareAddr = macFor(cfg.Subnet.Addr())
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return nil, fmt.Errorf("create bridge %s: %w", cfg.Bridge, err)
		}
		if br, err = h.LinkByName(cfg.Bridge); err != nil {
			return nil, err
		}
	}
	if br.Type() != "bridge" {
		return nil, fmt.Errorf("link %s exists and is a %s, not a bridge; pick another bridge name", cfg.Bridge, br.Type())
	}
	routes, err := nldump.Retry(func() ([]netlink.Route, error) { return h.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		if r.Dst == nil || r.LinkIndex == br.Attrs().Index {
			continue
		}
		p, ok := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		if ok && ones > 0 && netip.PrefixFrom(p.Unmap(), ones).Overlaps(cfg.Subnet) {
			return nil, fmt.Errorf("subnet %s overlaps the route to %s on another link; configure another subnet", cfg.Subnet, r.Dst)
		}
	}
	// Sandboxes have no IPv6; neither does their bridge (no link-local
	// address either, which would otherwise come and go with the ports).
	if err := h.LinkSetIP6AddrGenMode(br, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		return nil, fmt.Errorf("bridge %s: disable IPv6 addresses: %w", cfg.Bridge, err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+cfg.Bridge+"/disable_ipv6", []byte("1\n"), 0o644); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("bridge %s: disable IPv6: %w", cfg.Bridge, err)
	}
	gw := &netlink.Addr{IPNet: ipNet(cfg.gateway(), cfg.Subnet.Bits())}
	if err := h.AddrReplace(br, gw); err != nil {
		return nil, fmt.Errorf("address bridge %s: %w", cfg.Bridge, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return nil, err
	}
	return br, nil
}

// loopbackIndex is the index of "lo" in every network namespace.
const loopbackIndex = 1

// attach creates the veth pair of a, its sandbox end directly inside the
// namespace at a.NetNS, and configures both ends.
func attach(h *netlink.Handle, br netlink.Link, cfg Config, a *Attachment) error {
	ns, err := netns.GetFromPath(a.NetNS)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", a.NetNS, err)
	}
	defer ns.Close()

	attrs := netlink.NewLinkAttrs()
	attrs.Name = a.HostLink
	attrs.MasterIndex = br.Attrs().Index
	attrs.MTU = br.Attrs().MTU
	// One queue each way on both ends, asked for at creation: a veth made
	// without these gets one per CPU and is then cut down to one, and each
	// cut waits for an RCU grace period while holding the kernel's
	// network-config lock (rtnl), which every other sandbox's network
	// setup, teardown and namespace creation need too.
	attrs.NumTxQueues, attrs.NumRxQueues = 1, 1
	veth := &netlink.Veth{
		LinkAttrs:        attrs,
		PeerName:         sandboxLink,
		PeerHardwareAddr: macFor(a.Addr),
		PeerNamespace:    netlink.NsFd(int(ns)),
	}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", a.HostLink, err)
	}
	// LinkAdd looked the new link's index up by name already: the calls
	// below use it (a lookup of their own if it could not).
	host := netlink.Link(veth)
	// Isolated ports cannot talk to each other at layer 2: everything
	// between sandboxes goes through the host's router and firewall.
	if err := h.LinkSetIsolated(host, true); err != nil {
		return fmt.Errorf("isolate bridge port %s: %w", a.HostLink, err)
	}
	if err := h.LinkSetIP6AddrGenMode(host, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		return err
	}
	if err := h.LinkSetUp(host); err != nil {
		return err
	}

	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", a.NetNS, err)
	}
	defer nh.Close()
	// Every network namespace's loopback has index 1 (LOOPBACK_IFINDEX):
	// no lookup needed.
	if err := nh.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: loopbackIndex, Name: "lo"}}); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	eth, err := nh.LinkByName(sandboxLink)
	if err != nil {
		return err
	}
	// A /32 with the gateway as an on-link route: the sandbox sends
	// everything, its peers included, to the gateway.
	if err := nh.LinkSetIP6AddrGenMode(eth, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		return err
	}
	if err := nh.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(a.Addr, 32)}); err != nil {
		return fmt.Errorf("address %s: %w", a.Addr, err)
	}
	if err := nh.LinkSetUp(eth); err != nil {
		return err
	}
	gw := ipNet(a.Gateway, 32)
	if err := nh.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: gw, Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route to gateway: %w", err)
	}
	if err := nh.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.IP}); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	return nil
}

// detach deletes the host end of a veth pair (the kernel deletes the other
// end with it); a missing link is fine.
func detach(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	// ENODEV: the kernel deleted it meanwhile, with its namespace.
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// enableForwarding turns on IPv4 forwarding, which routing the sandboxes'
// traffic needs, and reports whether it was off before.
func enableForwarding() (bool, error) {
	const p = "/proc/sys/net/ipv4/ip_forward"
	b, err := os.ReadFile(p)
	if err != nil {
		return false, err
	}
	if len(b) > 0 && b[0] == '1' {
		return false, nil
	}
	if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
		return false, fmt.Errorf("enable ip_forward: %w", err)
	}
	return true, nil
}
