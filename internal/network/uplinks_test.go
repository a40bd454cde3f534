package network

import (
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
