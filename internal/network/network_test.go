package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	mnl "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestDefaultPolicy(t *testing.T) {
	w := newWorld(t)
	a, ns := w.sandbox("sb-default", Policy{})
	if !testSubnet.Contains(a.Addr) || a.Gateway != testSubnet.Addr().Next() {
		t.Fatalf("attachment %+v: address not from %s", a, testSubnet)
	}
	reach(t, "internet", ns, ap(publicAddr, 80))
	reach(t, "internet", ns, ap(allowedNet, 8080))
	blocked(t, "metadata service", ns, ap(metadataAddr, 80))
	blocked(t, "private range", ns, ap(privateAddr, 80))
	blocked(t, "host via gateway", ns, ap(a.Gateway, w.hostPort))
	blocked(t, "host via another host address", ns, ap(hostAddr, w.hostPort))
	blocked(t, "upstream link (private)", ns, ap(upAddr.Addr(), 80))

	// The default policy's sandboxes share its chains (ruleset.go): no
	// chain of their own in the inet table, so their creates add no
	// "goto" there; one with a policy of its own gets its chains.
	w.sandbox("sb-own-policy", Policy{DenyIngress: true})
	state := strings.Join(nftDump(t), "\n")
	for _, want := range []string{
		"chain " + egressChain(dfltKey) + " (", "set dflt (1 elements)",
		"chain " + egressChain(key("sb-own-policy")) + " (", "set pins (2 elements)", "set ports (2 elements)",
	} {
		if !strings.Contains(state, want) {
			t.Errorf("nftables state lacks %q:\n%s", want, state)
		}
	}
	for _, unwanted := range []string{egressChain(key("sb-default")), ingressChain(key("sb-default")), hostChain(key("sb-default"))} {
		if strings.Contains(state, "chain "+unwanted+" ") {
			t.Errorf("the default policy's sandbox has chain %s of its own", unwanted)
		}
	}
}

func TestPeerGroups(t *testing.T) {
	w := newWorld(t)
	a1, ns1 := w.sandbox("sb-a1", Policy{PeerGroup: "session-a"})
	a2, ns2 := w.sandbox("sb-a2", Policy{PeerGroup: "session-a"})
	b1, nsb := w.sandbox("sb-b1", Policy{PeerGroup: "session-b"})
	n1, nsn := w.sandbox("sb-none", Policy{})

	reach(t, "same group", ns1, ap(a2.Addr, 80))
	reach(t, "same group", ns2, ap(a1.Addr, 80))
	blocked(t, "other group", ns1, ap(b1.Addr, 80))
	blocked(t, "other group", nsb, ap(a1.Addr, 80))
	blocked(t, "no group to group", nsn, ap(a1.Addr, 80))
	blocked(t, "group to no group", ns1, ap(n1.Addr, 80))
	reach(t, "internet still open", ns1, ap(publicAddr, 80))

	// The group's set goes with its last member; the others keep working.
	if err := w.mgr.Teardown(context.Background(), "sb-a2"); err != nil {
		t.Fatal(err)
	}
	blocked(t, "torn-down peer", ns1, ap(a2.Addr, 80))
	a3, _ := w.sandbox("sb-a3", Policy{PeerGroup: "session-a"})
	reach(t, "new member", ns1, ap(a3.Addr, 80))
}

func TestDenyEgress(t *testing.T) {
	w := newWorld(t)
	a, ns := w.sandbox("sb-deny", Policy{DenyEgress: true})
	_, other := w.sandbox("sb-other", Policy{})
	for _, dst := range targets {
		blocked(t, "deny_egress", ns, ap(dst, 80))
	}
	blocked(t, "deny_egress host", ns, ap(a.Gateway, w.hostPort))
	reach(t, "neighbour unaffected", other, ap(publicAddr, 80))
}

func TestAllowCIDRs(t *testing.T) {
	w := newWorld(t)
	_, ns := w.sandbox("sb-allow", Policy{AllowCIDRs: []CIDRRule{
		{CIDR: "203.0.113.0/24", Ports: []int{8080}},
		{CIDR: metadataAddr.String()}, // an explicit hole in link-local
	}})
	reach(t, "allowed port", ns, ap(allowedNet, 8080))
	blocked(t, "other port of allowed prefix", ns, ap(allowedNet, 80))
	blocked(t, "not in allow-list", ns, ap(publicAddr, 80))
	blocked(t, "private not allowed", ns, ap(privateAddr, 80))
	reach(t, "explicitly allowed link-local", ns, ap(metadataAddr, 80))
}

func TestHostBlockAndAllowedHost(t *testing.T) {
	w := newWorld(t)
	w.mgr.Close()
	m, err := New(Config{Bridge: testBridge, Table: testTable, Subnet: testSubnet, StateDir: w.stateDir,
		HostBlock:          []CIDRRule{{CIDR: publicAddr.String(), Ports: []int{8080}}},
		ProtectedHostPorts: []int{w.hostPort + 1}})
	if err != nil {
		t.Fatal(err)
	}
	w.mgr = m
	_, ns := w.sandbox("sb-hb", Policy{AllowCIDRs: []CIDRRule{
		{CIDR: "0.0.0.0/0"},
		{CIDR: hostAddr.String(), Ports: []int{w.hostPort}},
		{CIDR: hostAddr.String(), Ports: []int{w.hostPort + 1}},
	}})
	reach(t, "allowed", ns, ap(publicAddr, 80))
	blocked(t, "host_block wins over allow-list", ns, ap(publicAddr, 8080))
	reach(t, "host address allowed explicitly", ns, ap(hostAddr, w.hostPort))
	serveHTTP(t, "", ap(hostAddr, w.hostPort+1).String()) // "the API port"
	blocked(t, "protected host port", ns, ap(hostAddr, w.hostPort+1))
	blocked(t, "gateway never opens", ns, ap(testSubnet.Addr().Next(), w.hostPort))
}

func TestDenyIngress(t *testing.T) {
	w := newWorld(t)
	open, _ := w.sandbox("sb-open", Policy{})
	closed, _ := w.sandbox("sb-closed", Policy{DenyIngress: true})
	up := nsPath(upNS)
	reach(t, "ingress allowed by default", up, ap(open.Addr, 80))
	blocked(t, "deny_ingress", up, ap(closed.Addr, 80))
	reach(t, "the host may still connect", "", ap(closed.Addr, 80))
}

func TestDNSExceptions(t *testing.T) {
	w := newWorld(t)
	w.mgr.Close()
	gw := testSubnet.Addr().Next()
	m, err := New(Config{Bridge: testBridge, Table: testTable, Subnet: testSubnet, StateDir: w.stateDir,
		DNS: []netip.Addr{gw, publicAddr}})
	if err != nil {
		t.Fatal(err)
	}
	w.mgr = m
	serveHTTP(t, "", ap(gw, 53).String()) // "the resolver sbx runs", on the gateway
	serveHTTP(t, nsPath(upNS), ":53")     // an upstream resolver
	_, denied := w.sandbox("sb-dns", Policy{DenyEgress: true})
	_, noDNS := w.sandbox("sb-nodns", Policy{DenyEgress: true, DenyDNS: true})
	reach(t, "DNS on the gateway despite deny_egress", denied, ap(gw, 53))
	reach(t, "DNS upstream despite deny_egress", denied, ap(publicAddr, 53))
	blocked(t, "only port 53", denied, ap(publicAddr, 80))
	blocked(t, "only port 53 on the gateway", denied, ap(gw, w.hostPort))
	blocked(t, "deny_dns", noDNS, ap(gw, 53))
	blocked(t, "deny_dns upstream", noDNS, ap(publicAddr, 53))
}

// TestAntiSpoofing: a sandbox that forges another sandbox's source address
// (its test-owned namespace adds the victim's address to eth0) must get
// nothing out, or it could use the victim's policy for one-way traffic
// (UDP). Upstream records every datagram it receives.
func TestAntiSpoofing(t *testing.T) {
	w := newWorld(t)
	_, spoofer := w.sandbox("sb-spoofer", Policy{DenyEgress: true})
	victim, victimNS := w.sandbox("sb-victim", Policy{})
	got := udpSink(t, nsPath(upNS))
	if err := inNS(spoofer, func() error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(victim.Addr, 32)})
	}); err != nil {
		t.Fatal(err)
	}
	// Resolved in advance, so that the forged datagrams leave at once and
	// not after the marker.
	pinNeighbor(t, spoofer, victim.Gateway, macFor(testSubnet.Addr()))
	for range 3 {
		sendUDP(t, spoofer, victim.Addr, publicAddr, "forged")
	}
	sendUDP(t, victimNS, victim.Addr, publicAddr, "marker")
	expectMarkerOnly(t, got)
}

// TestMACSpoofing: a sandbox that takes another sandbox's MAC address (and
// its IPv4 address) sends nothing out: its bridge port accepts only its own
// MAC (@pins in ruleset.go), whatever its policy allows.
func TestMACSpoofing(t *testing.T) {
	w := newWorld(t)
	spoofer, spooferNS := w.sandbox("sb-mac-spoofer", Policy{})
	victim, victimNS := w.sandbox("sb-mac-victim", Policy{})
	got := udpSink(t, nsPath(upNS))
	// Its own traffic goes out before it changes anything.
	sendUDP(t, spooferNS, spoofer.Addr, publicAddr, "marker-own")
	expectMarkerOnly(t, got)
	if err := inNS(spooferNS, func() error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetDown(eth); err != nil {
			return err
		}
		if err := netlink.LinkSetHardwareAddr(eth, macFor(victim.Addr)); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(eth); err != nil {
			return err
		}
		if err := netlink.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(victim.Addr, 32)}); err != nil {
			return err
		}
		// The routes went with the link; back through the gateway.
		gw := ipNet(spoofer.Gateway, 32)
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: gw, Scope: netlink.SCOPE_LINK}); err != nil {
			return err
		}
		return netlink.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.IP})
	}); err != nil {
		t.Fatal(err)
	}
	pinNeighbor(t, spooferNS, spoofer.Gateway, macFor(testSubnet.Addr()))
	for range 3 {
		sendUDP(t, spooferNS, spoofer.Addr, publicAddr, "forged-own-ip")
		sendUDP(t, spooferNS, victim.Addr, publicAddr, "forged-victim-ip")
	}
	sendUDP(t, victimNS, victim.Addr, publicAddr, "marker")
	expectMarkerOnly(t, got)
}

// TestARPSpoofing: a sandbox that announces another sandbox's address with
// its own MAC (a gratuitous ARP) does not redirect the host's traffic for
// that address: its bridge port passes only ARP for its own address and MAC.
func TestARPSpoofing(t *testing.T) {
	w := newWorld(t)
	spoofer, spooferNS := w.sandbox("sb-arp-spoofer", Policy{})
	victim, _ := w.sandbox("sb-arp-victim", Policy{})
	// The host talks to the victim first, so it has a neighbor entry that a
	// gratuitous ARP would update.
	if _, err := get("", ap(victim.Addr, 80)); err != nil {
		t.Fatalf("the host cannot reach the victim: %v", err)
	}
	br, err := netlink.LinkByName(testBridge)
	if err != nil {
		t.Fatal(err)
	}
	neighbor := func() string {
		ns, err := netlink.NeighList(br.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if n.IP.Equal(victim.Addr.AsSlice()) {
				return n.HardwareAddr.String()
			}
		}
		return ""
	}
	want := macFor(victim.Addr).String()
	if got := neighbor(); got != want {
		t.Fatalf("the host's neighbor entry for the victim: %q, want %q", got, want)
	}
	mine := macFor(spoofer.Addr)
	if err := inNS(spooferNS, func() error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		bcast := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		frame := append(append([]byte{}, bcast...), mine...)
		frame = append(frame, 0x08, 0x06) // ARP
		frame = append(frame, 0, 1, 0x08, 0, 6, 4)
		for _, op := range []byte{1, 2} { // a gratuitous request, then a reply
			pkt := append(append([]byte{}, frame...), 0, op)
			pkt = append(pkt, mine...)
			pkt = append(pkt, victim.Addr.AsSlice()...)
			pkt = append(pkt, bcast...)
			pkt = append(pkt, victim.Addr.AsSlice()...)
			to := &unix.SockaddrLinklayer{Ifindex: eth.Attrs().Index, Halen: 6, Protocol: htons(unix.ETH_P_ARP)}
			copy(to.Addr[:], bcast)
			for range 3 {
				if err := unix.Sendto(fd, pkt, 0, to); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if got := neighbor(); got != want {
		t.Errorf("after the spoofer's ARP the host sends the victim's traffic to %q, want %q", got, want)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestLayer2Isolation: a sandbox that routes the subnet on-link, to talk to
// another sandbox directly instead of through the host's firewall, reaches
// nothing: bridge ports are isolated.
func TestLayer2Isolation(t *testing.T) {
	w := newWorld(t)
	a, attacker := w.sandbox("sb-l2-attacker", Policy{})
	b, bNS := w.sandbox("sb-l2-target", Policy{PeerGroup: "g"})
	_, peer := w.sandbox("sb-l2-peer", Policy{PeerGroup: "g"})
	got := udpSink(t, bNS)
	routeOnLink(t, attacker)
	pinNeighbor(t, attacker, b.Addr, macFor(b.Addr))
	for range 3 {
		sendUDP(t, attacker, a.Addr, b.Addr, "forged")
	}
	peerAtt, _ := w.mgr.Get("sb-l2-peer")
	sendUDP(t, peer, peerAtt.Addr, b.Addr, "marker")
	expectMarkerOnly(t, got)
}

// pinNeighbor adds a permanent ARP entry in ns.
func pinNeighbor(t *testing.T, ns string, ip netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	err := inNS(ns, func() error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.NeighSet(&netlink.Neigh{LinkIndex: eth.Attrs().Index, State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: mac})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// udpSink collects the datagrams that arrive on port 9999 in ns.
func udpSink(t *testing.T, ns string) <-chan string {
	var pc net.PacketConn
	if err := inNS(ns, func() (err error) { pc, err = net.ListenPacket("udp4", ":9999"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n]) + " from " + from.String()
		}
	}()
	return got
}

func sendUDP(t *testing.T, ns string, src, dst netip.Addr, msg string) {
	t.Helper()
	err := inNS(ns, func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: src.AsSlice()}, net.UDPAddrFromAddrPort(ap(dst, 9999)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(msg))
		return err
	})
	if err != nil {
		t.Fatalf("send %s: %v", msg, err)
	}
}

// expectMarkerOnly waits for the "marker" datagram, sent after the forged
// ones by an allowed sender: once it is in, a forged datagram that got
// through would be in too.
func expectMarkerOnly(t *testing.T, got <-chan string) {
	t.Helper()
	for {
		select {
		case msg := <-got:
			if strings.HasPrefix(msg, "forged") {
				t.Fatalf("received a forged datagram: %s", msg)
			}
			if strings.HasPrefix(msg, "marker") {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the allowed marker datagram never arrived")
		}
	}
}

func TestRestartRefindsNetworks(t *testing.T) {
	w := newWorld(t)
	a, ns := w.sandbox("sb-restart", Policy{PeerGroup: "g"})
	b, nsb := w.sandbox("sb-restart-2", Policy{PeerGroup: "g", DenyEgress: true})
	w.mgr.Close()
	w.mgr = w.newManager() // rebuilds the tables from the state files

	list, err := w.mgr.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].SandboxID != "sb-restart" || list[0].Addr != a.Addr || !list[0].Linked ||
		!reflect.DeepEqual(list[1].Policy, b.Policy) {
		t.Fatalf("List after restart = %+v", list)
	}
	reach(t, "after restart", ns, ap(publicAddr, 80))
	reach(t, "peer after restart", ns, ap(b.Addr, 80))
	blocked(t, "deny_egress after restart", nsb, ap(publicAddr, 80))
	blocked(t, "metadata after restart", ns, ap(metadataAddr, 80))

	// A new sandbox does not get an address that is still in use.
	c, _ := w.sandbox("sb-restart-3", Policy{})
	if c.Addr == a.Addr || c.Addr == b.Addr {
		t.Fatalf("address %s handed out twice", c.Addr)
	}
}

func TestSetupErrors(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	ns := w.newSandboxNS()
	before := snapshot(t, w.stateDir)

	_, err := w.mgr.Setup(ctx, "sb-x", "/run/netns/does-not-exist", Policy{})
	if err == nil || !errors.Is(err, sandbox.ErrFailedPrecondition) {
		t.Fatalf("Setup with a missing netns = %v, want FailedPrecondition", err)
	}
	_, err = w.mgr.Setup(ctx, "sb-x", ns, Policy{AllowCIDRs: []CIDRRule{{CIDR: "nope"}}})
	if !errors.Is(err, sandbox.ErrInvalidArgument) {
		t.Fatalf("Setup with a bad policy = %v", err)
	}
	if after := snapshot(t, w.stateDir); !reflect.DeepEqual(before, after) {
		t.Fatalf("a failed Setup left something behind:\n%s", diffSnap(before, after))
	}
	if _, err := w.mgr.Setup(ctx, "sb-x", ns, Policy{}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.mgr.Setup(ctx, "sb-x", ns, Policy{}); !errors.Is(err, sandbox.ErrAlreadyExists) {
		t.Fatalf("second Setup = %v, want AlreadyExists", err)
	}
	// Teardown is idempotent, also after the namespace (and so the veth) is gone.
	ipQuiet("netns", "del", strings.TrimPrefix(ns, "/run/netns/"))
	for range 2 {
		if err := w.mgr.Teardown(ctx, "sb-x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.mgr.settle(); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, w.stateDir); !reflect.DeepEqual(before, after) {
		t.Fatalf("Teardown left something behind:\n%s", diffSnap(before, after))
	}
}

// TestHostCleanAfter50 sets up 50 sandboxes with varied policies, restarts
// the manager and tears them down; the host's links, addresses, routes, nftables and the state
// directory must be exactly as before.
func TestHostCleanAfter50(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	before := snapshot(t, w.stateDir)
	policies := []Policy{
		{}, {DenyEgress: true}, {PeerGroup: "s1"}, {PeerGroup: "s2", DenyIngress: true},
		{AllowCIDRs: []CIDRRule{{CIDR: "203.0.113.0/24", Ports: []int{80, 443}}}},
		{AllowNames: []string{"*.example.com"}},
	}
	var nss []string
	for i := range 50 {
		ns := w.newSandboxNS()
		nss = append(nss, ns)
		if _, err := w.mgr.Setup(ctx, fmt.Sprintf("sb-%02d", i), ns, policies[i%len(policies)]); err != nil {
			t.Fatal(err)
		}
	}
	if list, _ := w.mgr.List(); len(list) != 50 {
		t.Fatalf("List = %d attachments, want 50", len(list))
	}
	// A restart in the middle: New rebuilds all 50 from the state files.
	if err := w.mgr.Close(); err != nil {
		t.Fatal(err)
	}
	w.mgr = w.newManager()
	if list, _ := w.mgr.List(); len(list) != 50 {
		t.Fatalf("List after restart = %d attachments, want 50", len(list))
	}
	_, err := get(nss[0], ap(publicAddr, 80))
	if err != nil {
		t.Fatalf("sandbox 0 cannot reach upstream: %v", err)
	}
	for i := range 50 {
		if i%10 == 0 { // some namespaces die before Teardown, as with a crashed container
			ipQuiet("netns", "del", strings.TrimPrefix(nss[i], "/run/netns/"))
		}
		if err := w.mgr.Teardown(ctx, fmt.Sprintf("sb-%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.mgr.settle(); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, w.stateDir); !reflect.DeepEqual(before, after) {
		t.Fatalf("host changed after 50 sandboxes:\n%s", diffSnap(before, after))
	}
}

func diffSnap(a, b hostSnapshot) string {
	var out []string
	d := func(what string, x, y []string) {
		in := func(s []string, v string) bool {
			for _, e := range s {
				if e == v {
					return true
				}
			}
			return false
		}
		for _, v := range x {
			if !in(y, v) {
				out = append(out, what+" gone: "+v)
			}
		}
		for _, v := range y {
			if !in(x, v) {
				out = append(out, what+" new: "+v)
			}
		}
	}
	d("link", a.Links, b.Links)
	d("addr", a.Addrs, b.Addrs)
	d("route", a.Routes, b.Routes)
	d("nft", a.Nft, b.Nft)
	d("state", a.State, b.State)
	return strings.Join(out, "\n")
}

// BenchmarkSetupTeardown measures one sandbox's network coming and going
// in the runtime's order: Setup into a fresh namespace, the namespace goes
// (the container ends), Teardown. Creating the namespace is not timed.
func BenchmarkSetupTeardown(b *testing.B) {
	benchSetupTeardown(b, newWorld(b), nil)
}

// benchSetupTeardown runs the loop of BenchmarkSetupTeardown in w; check,
// if set, is called with every attachment.
func benchSetupTeardown(b *testing.B, w *world, check func(*Attachment)) {
	ctx := context.Background()
	p := Policy{PeerGroup: "bench", AllowCIDRs: []CIDRRule{{CIDR: "203.0.113.0/24", Ports: []int{443}}}}
	i := 0
	var setup, teardown time.Duration
	for b.Loop() {
		b.StopTimer()
		ns := anonNS(b)
		b.StartTimer()
		id := fmt.Sprintf("sb-bench-%d", i)
		t0 := time.Now()
		a, err := w.mgr.Setup(ctx, id, fmt.Sprintf("/proc/self/fd/%d", int(ns)), p)
		if err != nil {
			b.Fatal(err)
		}
		if check != nil {
			check(a)
		}
		ns.Close()
		t1 := time.Now()
		if err := w.mgr.Teardown(ctx, id); err != nil {
			b.Fatal(err)
		}
		setup, teardown = setup+t1.Sub(t0), teardown+time.Since(t1)
		i++
	}
	b.ReportMetric(float64(setup.Microseconds())/float64(i)/1000, "setup-ms/op")
	b.ReportMetric(float64(teardown.Microseconds())/float64(i)/1000, "teardown-ms/op")
	if err := w.mgr.settle(); err != nil {
		b.Fatal(err)
	}
}

// routeOnLink makes the sandbox in namespace ns route the whole test
// subnet on-link, so that it sends straight to other sandboxes' MACs.
func routeOnLink(t testing.TB, ns string) {
	t.Helper()
	if err := inNS(ns, func() error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: ipNet(testSubnet.Addr(), testSubnet.Bits()), Scope: netlink.SCOPE_LINK})
	}); err != nil {
		t.Fatal(err)
	}
}

// anonNS returns a handle on a new, unnamed network namespace; closing it
// destroys the namespace, as a container's end does.
func anonNS(t testing.TB) netns.NsHandle {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, err := netns.Get()
		if err != nil {
			c <- result{err: err}
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			c <- result{err: err}
			return
		}
		if err := netns.Set(orig); err != nil {
			panic(err) // the thread is in the wrong namespace; never unlock it
		}
		c <- result{ns: ns}
	}()
	r := <-c
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.ns
}

// BenchmarkSetupTeardownSync is the same with each veth pair's deletion
// waited for: the cost when a namespace outlives its network.
func BenchmarkSetupTeardownSync(b *testing.B) {
	w := newWorld(b)
	ns := w.newSandboxNS()
	ctx := context.Background()
	p := Policy{PeerGroup: "bench", AllowCIDRs: []CIDRRule{{CIDR: "203.0.113.0/24", Ports: []int{443}}}}
	for b.Loop() {
		if _, err := w.mgr.Setup(ctx, "sb-bench", ns, p); err != nil {
			b.Fatal(err)
		}
		if err := w.mgr.Teardown(ctx, "sb-bench"); err != nil {
			b.Fatal(err)
		}
		if err := w.mgr.settle(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVethOneQueue: both ends of a sandbox's veth pair are made with one
// queue each way. Without asking at creation the kernel makes one per CPU
// and cuts them down to one, waiting for an RCU grace period under the
// network-config lock (rtnl) on each end: on a 2-CPU host that made every
// other sandbox's network setup, teardown and namespace creation wait.
func TestVethOneQueue(t *testing.T) {
	w := newWorld(t)
	att, ns := w.sandbox("sb-queues", Policy{})
	host, err := netlink.LinkByName(att.HostLink)
	if err != nil {
		t.Fatal(err)
	}
	if a := host.Attrs(); a.NumTxQueues != 1 || a.NumRxQueues != 1 {
		t.Errorf("host end %s: %d tx and %d rx queues, want 1 and 1", att.HostLink, a.NumTxQueues, a.NumRxQueues)
	}
	if err := inNS(ns, func() error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if a := eth.Attrs(); a.NumTxQueues != 1 || a.NumRxQueues != 1 {
			t.Errorf("sandbox end: %d tx and %d rx queues, want 1 and 1", a.NumTxQueues, a.NumRxQueues)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestNftSocketOptions: the nftables socket gets big buffers (a restart
// rebuilds every sandbox's rules in one batch) and capped acknowledgements
// (each of a batch's messages is acknowledged; uncapped, each
// acknowledgement copies its message back).
func TestNftSocketOptions(t *testing.T) {
	c, err := mnl.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := bigBuffers(c); err != nil {
		t.Fatal(err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var capAck, rcv int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		if capAck, gerr = unix.GetsockoptInt(int(fd), unix.SOL_NETLINK, unix.NETLINK_CAP_ACK); gerr == nil {
			rcv, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		}
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if capAck != 1 {
		t.Errorf("NETLINK_CAP_ACK is %d, want 1", capAck)
	}
	if rcv < nftBuffer {
		t.Errorf("receive buffer %d bytes, want at least %d", rcv, nftBuffer)
	}
}

// TestRebind: a default-policy network changes hands as it is (address,
// link, rules, DNS answers), survives a restart under its new id, and a
// Rebind cut short between its two state writes leaves one network.
func TestRebind(t *testing.T) {
	w := newWorld(t)
	a, ns := w.sandbox("sb-first", Policy{})
	w.sandbox("sb-policy", Policy{DenyIngress: true})
	rulesBefore := nftDump(t)

	b, err := w.mgr.Rebind("sb-first", "sb-second", Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if b.SandboxID != "sb-second" || b.Addr != a.Addr || b.HostLink != a.HostLink {
		t.Fatalf("rebound attachment %+v, want %+v under sb-second", b, a)
	}
	if !reflect.DeepEqual(nftDump(t), rulesBefore) {
		t.Error("Rebind changed the rules")
	}
	if id, _, ok := w.mgr.Lookup(a.Addr); !ok || id != "sb-second" {
		t.Errorf("Lookup(%s) = %q %v, want sb-second", a.Addr, id, ok)
	}
	if _, err := w.mgr.Get("sb-first"); err == nil {
		t.Error("the old id still has a network")
	}
	reach(t, "internet after Rebind", ns, ap(publicAddr, 80))

	for _, c := range []struct {
		from, to string
		p        Policy
		kind     error
	}{
		{"sb-gone", "sb-x", Policy{}, sandbox.ErrNotFound},
		{"sb-second", "sb-policy", Policy{}, sandbox.ErrAlreadyExists},
		{"sb-second", "", Policy{}, sandbox.ErrInvalidArgument},
		{"sb-second", "sb-x", Policy{DenyEgress: true, AllowCIDRs: []CIDRRule{{CIDR: "203.0.113.0/24"}}}, sandbox.ErrInvalidArgument},
	} {
		if _, err := w.mgr.Rebind(c.from, c.to, c.p); sandbox.KindOf(err) != c.kind {
			t.Errorf("Rebind(%q, %q): %v, want %v", c.from, c.to, err, c.kind)
		}
	}
	if !reflect.DeepEqual(nftDump(t), rulesBefore) {
		t.Error("a refused Rebind changed the rules")
	}

	// A crash between writing the new record and removing the old: both
	// are on disk, and New keeps one.
	twin := *b
	twin.SandboxID = "sb-third"
	if err := w.mgr.state.save(&twin); err != nil {
		t.Fatal(err)
	}
	w.mgr.Close()
	w.mgr = w.newManager()
	list, err := w.mgr.List()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range list {
		ids = append(ids, l.SandboxID)
		if l.SandboxID == "sb-second" && (l.Addr != a.Addr || !l.Linked) {
			t.Errorf("after restart: %+v", l)
		}
	}
	if len(list) != 2 || ids[0] != "sb-policy" || (ids[1] != "sb-second" && ids[1] != "sb-third") {
		t.Errorf("networks after restart: %v, want sb-policy and one of sb-second, sb-third", ids)
	}
	if atts, err := w.mgr.state.load(); err != nil || len(atts) != 2 {
		t.Errorf("state files after restart: %d (%v), want 2", len(atts), err)
	}
	reach(t, "internet after restart", ns, ap(publicAddr, 80))
	if err := w.mgr.Teardown(context.Background(), ids[1]); err != nil {
		t.Fatal(err)
	}
}

// TestRebindPolicy: a network handed on with another policy enforces the
// new one at once, and nothing of the old one is left, whatever the two
// are (default, own chains, peer groups, name allow-lists).
func TestRebindPolicy(t *testing.T) {
	w := newWorld(t)
	a, ns := w.sandbox("sb-p0", Policy{})
	peer, nsPeer := w.sandbox("sb-peer", Policy{PeerGroup: "g"}) // each serves HTTP on :80
	baseline := nftDump(t)
	steps := []struct {
		id            string
		p             Policy
		upstream, grp bool // reaches the internet, the peer group
	}{
		{"sb-p1", Policy{DenyEgress: true}, false, false},
		{"sb-p2", Policy{PeerGroup: "g"}, true, true},
		{"sb-p3", Policy{PeerGroup: "g", DenyEgress: true}, false, true}, // same group, other rules
		{"sb-p4", Policy{AllowNames: []string{"*.example.com"}}, false, false},
		{"sb-p5", Policy{AllowCIDRs: []CIDRRule{{CIDR: publicAddr.String() + "/32", Ports: []int{80}}}}, true, false},
		{"sb-p6", Policy{}, true, false},
	}
	from := "sb-p0"
	for _, st := range steps {
		b, err := w.mgr.Rebind(from, st.id, st.p)
		if err != nil {
			t.Fatalf("Rebind(%s, %s): %v", from, st.id, err)
		}
		if b.Addr != a.Addr || !reflect.DeepEqual(b.Policy, st.p) {
			t.Fatalf("Rebind to %s: %+v", st.id, b)
		}
		if st.upstream {
			reach(t, st.id+" internet", ns, ap(publicAddr, 80))
		} else {
			blocked(t, st.id+" internet", ns, ap(publicAddr, 80))
		}
		if st.grp {
			reach(t, st.id+" peer", ns, ap(peer.Addr, 80))
			reach(t, st.id+" from peer", nsPeer, ap(a.Addr, 80))
		} else {
			blocked(t, st.id+" peer", ns, ap(peer.Addr, 80))
		}
		blocked(t, st.id+" metadata", ns, ap(metadataAddr, 80))
		state := strings.Join(nftDump(t), "\n")
		if k := key(from); strings.Contains(state, egressChain(k)+" ") || strings.Contains(state, resolvedSet(k)+" ") {
			t.Errorf("after Rebind to %s, rules of %s are left:\n%s", st.id, from, state)
		}
		from = st.id
	}
	// Back at the default policy: the rules are as before the first step.
	if got := nftDump(t); !reflect.DeepEqual(got, baseline) {
		t.Errorf("rules after the round trip differ:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(baseline, "\n"))
	}
	if w.mgr.groups["g"] != 1 {
		t.Errorf("peer group g counts %d members, want 1", w.mgr.groups["g"])
	}
}
