package network

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sbx-run/sbx/internal/testenv"
)

// TestBridgeNames: how many overflow bridges a subnet may need, what that
// leaves for the main bridge and for the length of the bridge's name.
func TestBridgeNames(t *testing.T) {
	for _, tc := range []struct {
		subnet            string
		overflow, mainCap int
		limit             int
		longest, rejected string
	}{
		{"10.203.0.0/16", 65, 958, 11, "sbx0.b65", "sbx012345678"},
		{"10.64.0.0/21", 3, 1020, 12, "sbx0.b3", "sbx0123456789"},
		{"10.64.0.0/24", 1, 1022, 12, "sbx0.b1", "sbx0123456789"},
		{"10.0.0.0/8", 511, 512, 10, "sbx0.b511", "sbx01234567"},
	} {
		p := netip.MustParsePrefix(tc.subnet)
		if n, c, l := maxOverflow(p), capacity(p, 0), BridgeNameLimit(p); n != tc.overflow || c != tc.mainCap || l != tc.limit {
			t.Errorf("%s: %d overflow bridges, %d sandboxes on the main one, names up to %d; want %d, %d, %d",
				p, n, c, l, tc.overflow, tc.mainCap, tc.limit)
		}
		if capacity(p, 1) != 1022 {
			t.Errorf("%s: overflow bridge takes %d sandboxes", p, capacity(p, 1))
		}
		if got := overflowName("sbx0", maxOverflow(p)); got != tc.longest {
			t.Errorf("%s: last overflow bridge %q, want %q", p, got, tc.longest)
		}
		_, err := Config{Bridge: tc.rejected, Subnet: p, StateDir: "/x"}.withDefaults()
		if err == nil || !strings.Contains(err.Error(), "bridge") || !strings.Contains(err.Error(), fmt.Sprintf("at most %d characters", tc.limit)) {
			t.Errorf("%s: bridge %q: %v", p, tc.rejected, err)
		}
		if _, err := (Config{Bridge: tc.rejected[:tc.limit], Subnet: p, StateDir: "/x"}).withDefaults(); err != nil {
			t.Errorf("%s: bridge %q: %v", p, tc.rejected[:tc.limit], err)
		}
	}
	// Derived names parse back only as themselves.
	sub := netip.MustParsePrefix("10.203.0.0/16")
	for name, want := range map[string]int{"sbx0.b1": 1, "sbx0.b65": 65, "sbx0.b66": 0, "sbx0.b0": 0, "sbx0.b01": 0,
		"sbx0.t1": 0, "sbx0": 0, "sbx1.b1": 0, "sbx0.b1x": 0} {
		if n, _ := overflowIndex("sbx0", name, sub); n != want {
			t.Errorf("overflowIndex(%q) = %d, want %d", name, n, want)
		}
	}
}

// overflowWorld is a test world whose bridges take only ports ports (so
// overflow bridges come after a few sandboxes) and whose manager has sbx's
// resolver on the gateway, where the test serves TCP port 53.
func overflowWorld(t *testing.T, ports int) *world {
	old := bridgePorts
	bridgePorts = ports
	t.Cleanup(func() { bridgePorts = old })
	if os.Getenv(noBrNetfilter) != "" {
		offBrNetfilter(t)
	}
	w := newWorld(t)
	// Should a packet ever enter the host through an overflow bridge, it
	// goes to upstream as well, never off this machine.
	for i := 1; i <= maxOverflow(testSubnet); i++ {
		prio := fmt.Sprint(rulePriority + i)
		ipQuiet("rule", "del", "priority", prio)
		ipCmd(t, "rule", "add", "priority", prio, "iif", overflowName(testBridge, i), "lookup", fmt.Sprint(routeTable))
		t.Cleanup(func() { ipQuiet("rule", "del", "priority", prio) })
	}
	w.mgr.Close()
	w.mgr = dnsManager(t, w)
	serveHTTP(t, "", ap(testSubnet.Addr().Next(), 53).String())
	return w
}

// dnsManager is the world's manager with sbx's resolver on the gateway.
func dnsManager(t testing.TB, w *world) *Manager {
	t.Helper()
	m, err := New(Config{Bridge: testBridge, Table: testTable, Subnet: testSubnet, StateDir: w.stateDir,
		DNS: []netip.Addr{testSubnet.Addr().Next()}, NameResolver: true})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// linkInfo returns the master's name of a link and whether it is an
// isolated bridge port.
func linkInfo(t *testing.T, name string) (master string, isolated bool) {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	if mi := l.Attrs().MasterIndex; mi > 0 {
		ml, err := netlink.LinkByIndex(mi)
		if err != nil {
			t.Fatal(err)
		}
		master = ml.Attrs().Name
	}
	pi, err := netlink.LinkGetProtinfo(l)
	if err != nil {
		t.Fatalf("protinfo of %s: %v", name, err)
	}
	return master, pi.Isolated
}

// checkTopology checks the links of overflow bridges 1..n.
func checkTopology(t *testing.T, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		ob := overflowName(testBridge, i)
		if m, iso := linkInfo(t, trunkName(testBridge, i)); m != testBridge || !iso {
			t.Errorf("trunk %s: master %q, isolated %v; want %s, isolated", trunkName(testBridge, i), m, iso, testBridge)
		}
		if m, iso := linkInfo(t, uplinkName(testBridge, i)); m != ob || iso {
			t.Errorf("uplink %s: master %q, isolated %v; want %s, not isolated", uplinkName(testBridge, i), m, iso, ob)
		}
		l, err := netlink.LinkByName(ob)
		if err != nil {
			t.Fatal(err)
		}
		if addrs, _ := netlink.AddrList(l, netlink.FAMILY_ALL); len(addrs) != 0 {
			t.Errorf("overflow bridge %s has addresses %v", ob, addrs)
		}
		if l.Attrs().HardwareAddr.String() != overflowMAC(testSubnet, i).String() || l.Attrs().OperState == netlink.OperDown {
			t.Errorf("overflow bridge %s: MAC %s, state %s", ob, l.Attrs().HardwareAddr, l.Attrs().OperState)
		}
		if b, _ := os.ReadFile("/proc/sys/net/ipv6/conf/" + ob + "/disable_ipv6"); strings.TrimSpace(string(b)) != "1" {
			t.Errorf("IPv6 on %s: disable_ipv6 = %q", ob, b)
		}
	}
}

// expectFrom waits for the datagram msg and checks who sent it.
func expectFrom(t *testing.T, got <-chan string, msg string, from netip.Addr) {
	t.Helper()
	select {
	case m := <-got:
		if !strings.HasPrefix(m, msg+" from "+from.String()+":") {
			t.Errorf("upstream received %q, want %q from %s", m, msg, from)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("%q never arrived", msg)
	}
}

// TestOverflowBridges: with 6 ports a bridge, the main bridge takes 4
// sandboxes (2 ports are kept for trunks), each overflow bridge 5. Sandboxes
// on overflow bridges work like the others, survive a restart, and leave
// nothing behind.
func TestOverflowBridges(t *testing.T) {
	w := overflowWorld(t, 6)
	ctx := context.Background()
	gw := testSubnet.Addr().Next()
	ob1, ob2 := overflowName(testBridge, 1), overflowName(testBridge, 2)
	type sb struct {
		a  *Attachment
		ns string
	}
	sbs := map[string]sb{}
	for _, s := range []struct {
		id, bridge string
		p          Policy
	}{
		{"m1", testBridge, Policy{PeerGroup: "g"}}, {"m2", testBridge, Policy{}}, {"m3", testBridge, Policy{}}, {"m4", testBridge, Policy{}},
		{"o1", ob1, Policy{PeerGroup: "g"}}, {"o2", ob1, Policy{PeerGroup: "g"}}, {"o3", ob1, Policy{}},
		{"o4", ob1, Policy{DenyEgress: true}}, {"o5", ob1, Policy{}},
		{"p1", ob2, Policy{PeerGroup: "g"}},
	} {
		a, ns := w.sandbox(s.id, s.p)
		if a.Bridge != s.bridge {
			t.Fatalf("sandbox %s on bridge %q, want %q", s.id, a.Bridge, s.bridge)
		}
		if m, iso := linkInfo(t, a.HostLink); m != s.bridge || !iso {
			t.Fatalf("port of %s: master %q, isolated %v", s.id, m, iso)
		}
		sbs[s.id] = sb{a, ns}
	}
	checkTopology(t, 2)

	o1, o4, p1, m1 := sbs["o1"], sbs["o4"], sbs["p1"], sbs["m1"]
	reach(t, "internet from overflow", o1.ns, ap(publicAddr, 80))
	reach(t, "internet from 2nd overflow", p1.ns, ap(publicAddr, 80))
	reach(t, "DNS on the gateway", o1.ns, ap(gw, 53))
	reach(t, "DNS despite deny_egress", o4.ns, ap(gw, 53))
	blocked(t, "deny_egress", o4.ns, ap(publicAddr, 80))
	blocked(t, "host via gateway", o1.ns, ap(gw, w.hostPort))
	blocked(t, "host via another address", o1.ns, ap(hostAddr, w.hostPort))
	blocked(t, "metadata", o1.ns, ap(metadataAddr, 80))
	reach(t, "ingress from upstream", nsPath(upNS), ap(o1.a.Addr, 80))
	reach(t, "the host may connect", "", ap(o4.a.Addr, 80))

	got := udpSink(t, nsPath(upNS))
	sendUDP(t, o1.ns, o1.a.Addr, publicAddr, "masq")
	expectFrom(t, got, "masq", upHostAddr.Addr())

	for _, c := range []struct{ from, to string }{{"o1", "m1"}, {"m1", "o1"}, {"o1", "o2"}, {"o2", "p1"}, {"p1", "m1"}} {
		reach(t, "peer group "+c.from+"->"+c.to, sbs[c.from].ns, ap(sbs[c.to].a.Addr, 80))
	}
	for _, c := range []struct{ from, to string }{{"o3", "o1"}, {"o3", "o5"}, {"o3", "m2"}, {"m2", "o3"}, {"o3", "p1"}, {"m2", "m3"}} {
		blocked(t, "no group "+c.from+"->"+c.to, sbs[c.from].ns, ap(sbs[c.to].a.Addr, 80))
	}

	// A restart keeps the bridges, their trunks and who is on which; it
	// brings back a trunk deleted by hand, removes a stray veth from an
	// overflow bridge, and reads a state file from before overflow
	// bridges (no "bridge") as the main bridge.
	if err := w.mgr.Close(); err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(w.stateDir, key("m2")+".json")
	b, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	legacy := strings.Replace(string(b), `"bridge":"`+testBridge+`",`, "", 1)
	if legacy == string(b) {
		t.Fatalf("state file has no bridge: %s", b)
	}
	if err := os.WriteFile(statePath, []byte(legacy), 0o600); err != nil {
		t.Fatal(err)
	}
	ipCmd(t, "link", "del", trunkName(testBridge, 2))
	ipCmd(t, "link", "add", "sbxtstray0", "type", "veth", "peer", "name", "sbxtstray1")
	t.Cleanup(func() { ipQuiet("link", "del", "sbxtstray0") })
	ipCmd(t, "link", "set", "sbxtstray0", "master", ob1)
	before, _ := netlink.LinkByName(ob1)
	w.mgr = dnsManager(t, w)
	after, _ := netlink.LinkByName(ob1)
	if before.Attrs().Index != after.Attrs().Index {
		t.Errorf("restart replaced %s", ob1)
	}
	if _, err := netlink.LinkByName("sbxtstray0"); err == nil {
		t.Error("stray veth on an overflow bridge survived New")
	}
	checkTopology(t, 2)
	list, _ := w.mgr.List()
	if len(list) != len(sbs) {
		t.Fatalf("List after restart: %d attachments", len(list))
	}
	for _, a := range list {
		if want := sbs[a.SandboxID].a.Bridge; a.Bridge != want || !a.Linked {
			t.Errorf("after restart %s is on %q (linked %v), want %q", a.SandboxID, a.Bridge, a.Linked, want)
		}
	}
	reach(t, "2nd overflow after its trunk came back", p1.ns, ap(publicAddr, 80))
	reach(t, "peer after restart", o1.ns, ap(m1.a.Addr, 80))
	blocked(t, "deny_egress after restart", o4.ns, ap(publicAddr, 80))
	// The counts came back: main and the 1st overflow bridge are full.
	if a, _ := w.sandbox("p2", Policy{}); a.Bridge != ob2 {
		t.Errorf("new sandbox after restart on %s, want %s", a.Bridge, ob2)
	}
	sbs["p2"] = sb{}
	// A freed port is used again, once its veth is gone.
	if err := w.mgr.Teardown(ctx, "m3"); err != nil {
		t.Fatal(err)
	}
	if err := w.mgr.settle(); err != nil {
		t.Fatal(err)
	}
	if a, _ := w.sandbox("m5", Policy{}); a.Bridge != testBridge {
		t.Errorf("sandbox after a teardown on main on %s", a.Bridge)
	}
	delete(sbs, "m3")
	sbs["m5"] = sb{}

	// Teardown of all leaves bridges and trunks, no sandbox port, no rule.
	for id := range sbs {
		if err := w.mgr.Teardown(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.mgr.settle(); err != nil {
		t.Fatal(err)
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "sbxv") && l.Attrs().MasterIndex > 0 {
			if m, _ := linkInfo(t, l.Attrs().Name); m == testBridge || strings.HasPrefix(m, testBridge+".") {
				t.Errorf("veth %s left on %s", l.Attrs().Name, m)
			}
		}
	}
	for _, line := range nftDump(t) {
		// The uplinks map holds the host's addresses, not sandboxes'.
		if strings.Contains(line, " "+testTable+" ") && strings.Contains(line, " set ") && !strings.HasSuffix(line, "(0 elements)") &&
			!strings.HasSuffix(line, " set "+uplinksMap+" (some elements)") {
			t.Errorf("left in nftables: %s", line)
		}
	}
	// Destroy removes the overflow bridges and trunks with the main one.
	if err := w.mgr.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	expectNoLinks(t)
	w.mgr.Close()
	w.mgr = dnsManager(t, w) // for the world's cleanup
}

// expectNoLinks checks that no link of testBridge's is left.
func expectNoLinks(t *testing.T) {
	t.Helper()
	links, _ := netlink.LinkList()
	for _, l := range links {
		if n := l.Attrs().Name; n == testBridge || strings.HasPrefix(n, testBridge+".") {
			t.Errorf("link %s left behind", n)
		}
	}
}

// TestTestenvRemovesOverflowBridges: testenv's cleanup, for servers whose
// manager never gets to Destroy, removes overflow bridges and trunks too.
func TestTestenvRemovesOverflowBridges(t *testing.T) {
	w := overflowWorld(t, 4) // main: 3 sandboxes, overflow: 3
	for i := range 5 {
		w.sandbox(fmt.Sprintf("s%d", i), Policy{})
	}
	checkTopology(t, 1)
	w.mgr.Close()
	if err := (testenv.Network{Bridge: testBridge, Table: testTable}).Remove(); err != nil {
		t.Fatal(err)
	}
	expectNoLinks(t)
	os.RemoveAll(w.stateDir)
	os.MkdirAll(w.stateDir, 0o700)
	w.mgr = dnsManager(t, w) // for the world's cleanup
}
