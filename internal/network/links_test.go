package network

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestSandboxLinks reads back from the kernel what attach configures: the
// host end is an up, isolated port of the bridge with no IPv6 address; in
// the namespace lo and eth0 are up, eth0 holds the /32 and no IPv6
// address, and the default route goes via the gateway.
func TestSandboxLinks(t *testing.T) {
	w := newWorld(t)
	a, ns := w.sandbox("sb-links", Policy{})
	host, err := netlink.LinkByName(a.HostLink)
	if err != nil {
		t.Fatal(err)
	}
	br, err := netlink.LinkByName(a.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	if host.Attrs().Flags&net.FlagUp == 0 || host.Attrs().MasterIndex != br.Attrs().Index {
		t.Errorf("host link %s: flags %v, master %d; want up on bridge %s (%d)", a.HostLink, host.Attrs().Flags, host.Attrs().MasterIndex, a.Bridge, br.Attrs().Index)
	}
	if pi, err := netlink.LinkGetProtinfo(host); err != nil || !pi.Isolated {
		t.Errorf("host link %s: protinfo %v, %v; want an isolated port", a.HostLink, pi, err)
	}
	if addrs, err := netlink.AddrList(host, netlink.FAMILY_V6); err != nil || len(addrs) != 0 {
		t.Errorf("host link %s: IPv6 addresses %v, %v; want none", a.HostLink, addrs, err)
	}
	err = inNS(ns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if lo.Attrs().Flags&net.FlagUp == 0 || lo.Attrs().Index != loopbackIndex {
			t.Errorf("lo: flags %v, index %d; want up, %d", lo.Attrs().Flags, lo.Attrs().Index, loopbackIndex)
		}
		eth, err := netlink.LinkByName(sandboxLink)
		if err != nil {
			return err
		}
		if eth.Attrs().Flags&net.FlagUp == 0 || eth.Attrs().HardwareAddr.String() != macFor(a.Addr).String() {
			t.Errorf("%s: flags %v, MAC %s; want up, %s", sandboxLink, eth.Attrs().Flags, eth.Attrs().HardwareAddr, macFor(a.Addr))
		}
		v4, err := netlink.AddrList(eth, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(v4) != 1 || v4[0].IPNet.String() != a.Addr.String()+"/32" {
			t.Errorf("%s: IPv4 addresses %v; want %s/32", sandboxLink, v4, a.Addr)
		}
		if v6, err := netlink.AddrList(eth, netlink.FAMILY_V6); err != nil || len(v6) != 0 {
			t.Errorf("%s: IPv6 addresses %v, %v; want none", sandboxLink, v6, err)
		}
		routes, err := netlink.RouteList(eth, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		def := false
		for _, r := range routes {
			def = def || (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == a.Gateway.String()
		}
		if !def {
			t.Errorf("%s: routes %v; want a default route via %s", sandboxLink, routes, a.Gateway)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
