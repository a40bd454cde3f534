package network

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSourceNATFollowsAddresses: what a sandbox sends out of the host
// leaves with the address of the link it leaves through, also after that
// address changed while the manager ran; and the rules use no masquerade,
// whose link watch walks the whole conntrack table on every deleted veth
// (uplinks.go).
func TestSourceNATFollowsAddresses(t *testing.T) {
	w := newWorld(t)
	a, ns := w.sandbox("sb-snat", Policy{})
	got := udpSink(t, nsPath(upNS))
	sendUDP(t, ns, a.Addr, publicAddr, "first")
	expectFrom(t, got, "first", upHostAddr.Addr())

	out, err := exec.Command("nft", "list", "table", "inet", testTable).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	if strings.Contains(string(out), "masquerade") {
		t.Errorf("the rules masquerade:\n%s", out)
	}

	// A new address on the uplink (a subnet that still holds upstream's
	// address, so the route through it stays), then the old one removed.
	next := netip.MustParsePrefix("10.210.0.77/24")
	ipCmd(t, "addr", "add", next.String(), "dev", upLink)
	ipCmd(t, "addr", "del", upHostAddr.String(), "dev", upLink)
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		msg := "after-" + string(rune('a'+i%26))
		sendUDP(t, ns, a.Addr, publicAddr, msg)
		select {
		case m := <-got:
			t.Logf("got %s", m)
			if strings.HasPrefix(m, msg+" from "+next.Addr().String()+":") {
				if err := w.mgr.UplinkError(); err != nil {
					t.Errorf("UplinkError: %v", err)
				}
				return
			}
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			o, _ := exec.Command("nft", "list", "map", "inet", testTable, uplinksMap).CombinedOutput()
			r, _ := exec.Command("ip", "route", "show", "table", "2090").CombinedOutput()
			t.Logf("%s\n%s", o, r)
			t.Fatalf("no datagram from %s within 10s of the address change", next.Addr())
		}
	}
}

// TestSourceNATLinkWithoutAddress: what leaves through a link without an
// IPv4 address of its own gets one of the host's (masquerade's choice, the
// host's first), never the sandbox's private address.
func TestSourceNATLinkWithoutAddress(t *testing.T) {
	w := newWorld(t)
	a, ns := w.sandbox("sb-noaddr", Policy{})
	// A second link to upstream, with no address on the host's end, and a
	// route to one target through it.
	const bare, target = "sbxtup1", "203.0.113.77"
	ipCmd(t, "link", "add", bare, "type", "veth", "peer", "name", "eth1", "netns", upNS)
	t.Cleanup(func() { ipQuiet("link", "del", bare) })
	ipCmd(t, "link", "set", bare, "addrgenmode", "none")
	ipCmd(t, "link", "set", bare, "up")
	ipCmd(t, "-n", upNS, "link", "set", "eth1", "up")
	ipCmd(t, "-n", upNS, "addr", "add", target+"/32", "dev", "lo")
	for _, k := range []string{"all", "default", "eth1"} {
		if out, err := exec.Command("ip", "netns", "exec", upNS, "sysctl", "-qw", "net.ipv4.conf."+k+".rp_filter=0").CombinedOutput(); err != nil {
			t.Fatalf("rp_filter in %s: %v: %s", upNS, err, out)
		}
	}
	ipCmd(t, "route", "add", target+"/32", "dev", bare, "table", "2090")
	got := udpSink(t, nsPath(upNS))
	sendUDP(t, ns, a.Addr, netip.MustParseAddr(target), "bare")
	select {
	case m := <-got:
		from, _, _ := strings.Cut(strings.TrimPrefix(m, "bare from "), ":")
		src, err := netip.ParseAddr(from)
		if err != nil || src == a.Addr || !hostHas(t, src) {
			t.Errorf("upstream received %q: want a source address of the host's, not the sandbox's %s", m, a.Addr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing arrived through the link without an address")
	}
}

// hostHas reports whether a is one of this network namespace's addresses.
func hostHas(t *testing.T, a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range addrs {
		if n, ok := x.(*net.IPNet); ok {
			if b, ok := netip.AddrFromSlice(n.IP.To4()); ok && b == a {
				return true
			}
		}
	}
	return false
}
