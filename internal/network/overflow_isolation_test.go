package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// TestOverflowIsolation: sandboxes on overflow bridges reach no other
// sandbox at layer 2 (on their bridge, on the main one, on another
// overflow bridge), cannot enter the host through their overflow bridge
// instead of the main one, and cannot forge their address or MAC.
func TestOverflowIsolation(t *testing.T) {
	w := overflowWorld(t, 5) // main: s0-s2; overflow 1: s3-s6; overflow 2: s7
	ctx := context.Background()
	gw := testSubnet.Addr().Next()
	var atts []*Attachment
	var nss []string
	for i := range 8 {
		a, ns := w.sandbox(fmt.Sprintf("s%d", i), Policy{DenyEgress: i == 3})
		atts, nss = append(atts, a), append(nss, ns)
	}
	if atts[2].Bridge != testBridge || atts[3].Bridge != overflowName(testBridge, 1) || atts[7].Bridge != overflowName(testBridge, 2) {
		t.Fatalf("placement: %s %s %s", atts[2].Bridge, atts[3].Bridge, atts[7].Bridge)
	}
	// s4 (overflow 1) and s1 (main) route the subnet on-link and send
	// straight to the MACs of sandboxes on each kind of bridge; the host
	// (which may always send) sends each target a marker after that.
	routeOnLink(t, nss[4])
	routeOnLink(t, nss[1])
	for _, c := range []struct{ from, to int }{
		{4, 5}, // same overflow bridge
		{4, 0}, // overflow to main
		{4, 7}, // overflow to another overflow
		{1, 6}, // main to overflow
	} {
		got := udpSink(t, nss[c.to])
		pinNeighbor(t, nss[c.from], atts[c.to].Addr, macFor(atts[c.to].Addr))
		for range 3 {
			sendUDP(t, nss[c.from], atts[c.from].Addr, atts[c.to].Addr, "forged")
		}
		sendUDP(t, "", gw, atts[c.to].Addr, "marker")
		expectMarkerOnly(t, got)
	}

	// s3 (overflow 1, deny_egress) sends to the gateway's address but to
	// the MAC of its overflow bridge or of the bridge's uplink port: these
	// frames would enter the host through the overflow bridge, past every
	// rule. They are dropped: even DNS, which its policy allows, gets no
	// answer, and nothing reaches upstream.
	got := udpSink(t, nsPath(upNS))
	reach(t, "DNS before", nss[3], ap(gw, 53))
	uplink, err := netlink.LinkByName(uplinkName(testBridge, 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, mac := range []net.HardwareAddr{overflowMAC(testSubnet, 1), uplink.Attrs().HardwareAddr} {
		pinNeighbor(t, nss[3], gw, mac)
		blocked(t, "DNS via "+mac.String(), nss[3], ap(gw, 53))
		sendUDP(t, nss[3], atts[3].Addr, publicAddr, "forged")
	}
	sendUDP(t, nss[0], atts[0].Addr, publicAddr, "marker")
	expectMarkerOnly(t, got)
	pinNeighbor(t, nss[3], gw, macFor(testSubnet.Addr()))
	reach(t, "DNS after", nss[3], ap(gw, 53))

	// s7 (overflow 2) forges the address of s5 (overflow 1), then that of
	// s0 (main), then the address and the MAC of s5.
	forge := func(victim int, mac bool) {
		if err := inNS(nss[7], func() error {
			eth, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			if mac {
				if err := netlink.LinkSetHardwareAddr(eth, macFor(atts[victim].Addr)); err != nil {
					return err
				}
			}
			return netlink.AddrReplace(eth, &netlink.Addr{IPNet: ipNet(atts[victim].Addr, 32)})
		}); err != nil {
			t.Fatal(err)
		}
		pinNeighbor(t, nss[7], gw, macFor(testSubnet.Addr()))
		for range 3 {
			sendUDP(t, nss[7], atts[victim].Addr, publicAddr, "forged")
		}
		sendUDP(t, nss[victim], atts[victim].Addr, publicAddr, "marker")
		expectMarkerOnly(t, got)
	}
	forge(5, false)
	forge(0, false)
	forge(5, true)
	for i := range atts {
		if err := w.mgr.Teardown(ctx, fmt.Sprintf("s%d", i)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOverflowFullErrors: past the last overflow bridge, Setup fails with
// ResourceExhausted and leaves nothing behind.
func TestOverflowFullErrors(t *testing.T) {
	old := bridgePorts
	bridgePorts = 4 // one overflow bridge of 3, main 3: 6 sandboxes
	t.Cleanup(func() { bridgePorts = old })
	w := newWorld(t)
	w.mgr.Close()
	var err error
	small := netip.MustParsePrefix("10.209.0.0/28") // 13 addresses: needs 1 overflow bridge
	if w.mgr, err = New(Config{Bridge: testBridge, Table: testTable, Subnet: small, StateDir: w.stateDir}); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if _, err := w.mgr.Setup(context.Background(), fmt.Sprint("s", i), w.newSandboxNS(), Policy{}); err != nil {
			t.Fatal(err)
		}
	}
	before := ownSnapshot(t, w.stateDir)
	_, err = w.mgr.Setup(context.Background(), "s6", w.newSandboxNS(), Policy{})
	if !errors.Is(err, sandbox.ErrResourceExhausted) || sandbox.ReasonOf(err) != sandbox.ReasonSubnetExhausted || !strings.Contains(err.Error(), "overflow") {
		t.Fatalf("Setup on full bridges = %v", err)
	}
	if after := ownSnapshot(t, w.stateDir); diffSnap(before, after) != "" {
		t.Fatalf("a failed Setup left something behind:\n%s", diffSnap(before, after))
	}
	if _, err := netlink.LinkByName(hostLinkName(key("s6"))); err == nil {
		t.Fatal("a failed Setup left its veth behind")
	}
}

// ownSnapshot is snapshot without what other tests on this host change at
// the same time: links other than the test bridges, addresses, routes and
// other nftables tables.
func ownSnapshot(t *testing.T, stateDir string) hostSnapshot {
	s := snapshot(t, stateDir)
	keep := func(in []string, ok func(string) bool) []string {
		var out []string
		for _, v := range in {
			if ok(v) {
				out = append(out, v)
			}
		}
		return out
	}
	s.Links = keep(s.Links, func(v string) bool {
		return strings.HasPrefix(v, testBridge+"/") || strings.HasPrefix(v, testBridge+".")
	})
	s.Nft = keep(s.Nft, func(v string) bool {
		return strings.Contains(v, " "+testTable+" ") || strings.HasSuffix(v, " "+testTable)
	})
	s.Addrs, s.Routes = nil, nil
	return s
}

// noBrNetfilter marks the run of TestOverflowWithoutBrNetfilter's child;
// its value is the parent's network namespace.
const noBrNetfilter = "SBX_TEST_NO_BR_NETFILTER"

// TestOverflowWithoutBrNetfilter runs the overflow tests again where
// br_netfilter does not hand bridged frames to the inet hooks, as on hosts
// without that module: in a network namespace of their own, whose
// bridge-nf-call-iptables is off (the setting is per namespace). Where it
// is on (as on this host), the firewall also sees bridged frames, which
// would hide a bridge port that forwards where it must not.
func TestOverflowWithoutBrNetfilter(t *testing.T) {
	if os.Getenv(noBrNetfilter) != "" {
		t.Skip("this is the run without br_netfilter")
	}
	requireNet(t)
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		t.Skip("br_netfilter is not loaded: the other tests ran without it")
	}
	name := fmt.Sprintf("sbxn-%d", os.Getpid()) // not sbxt-: the child's world deletes those
	ipCmd(t, "netns", "add", name)
	t.Cleanup(func() { ipQuiet("netns", "del", name) })
	cmd := exec.Command("ip", "netns", "exec", name, os.Args[0], "-test.count=1", "-test.v",
		"-test.run", "^(TestOverflowBridges|TestOverflowIsolation)$")
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), noBrNetfilter+"="+host)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestOverflowIsolation") {
		t.Fatalf("overflow tests without br_netfilter: %v\n%s", err, out)
	}
}

// offBrNetfilter turns off br_netfilter's inet hooks for bridged frames in
// the test's namespace, which must not be the parent's.
func offBrNetfilter(t *testing.T) {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil || self == os.Getenv(noBrNetfilter) {
		t.Fatalf("%s is set but this is the parent's network namespace (%v)", noBrNetfilter, err)
	}
	ipCmd(t, "link", "set", "lo", "up")
	for _, f := range []string{"bridge-nf-call-iptables", "bridge-nf-call-arptables"} {
		if err := os.WriteFile("/proc/sys/net/bridge/"+f, []byte("0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
