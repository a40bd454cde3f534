package network

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/network/nstest"
	"github.com/sbx-run/sbx/internal/testenv"
)

// The test world. Nothing here sends a packet off this machine: every
// address the tests talk to lives in a namespace the test creates, and a
// policy-routing rule sends everything forwarded from the test bridge into
// the "upstream" namespace, so even a broken firewall cannot route a
// sandbox's packet anywhere else.
//
//	sandbox netns --veth-- [bridge sbxt0 10.209.0.1/16] host --veth sbxtup0 10.210.0.1/30-- upstream netns
//	                                                                                     10.210.0.2, lo: the targets below
const (
	testBridge   = "sbxt0"
	testTable    = "sbxtest"
	upLink       = "sbxtup0"
	upNS         = "sbxt-up"
	routeTable   = 2090
	rulePriority = 1090
)

var (
	testSubnet = netip.MustParsePrefix("10.209.0.0/16")
	upHostAddr = netip.MustParsePrefix("10.210.0.1/30")
	upAddr     = netip.MustParsePrefix("10.210.0.2/30")
	// Targets in the upstream namespace.
	publicAddr   = netip.MustParseAddr("198.51.100.10") // "the internet"
	allowedNet   = netip.MustParseAddr("203.0.113.10")  // for allow-list tests
	metadataAddr = netip.MustParseAddr("169.254.169.254")
	privateAddr  = netip.MustParseAddr("10.99.0.10")
	// A host address on a link the test owns.
	hostAddr = netip.MustParseAddr("198.18.255.77") // benchmarking range: not in the host's LAN, not blocked by default
	targets  = []netip.Addr{publicAddr, allowedNet, metadataAddr, privateAddr}
)

type world struct {
	t        testing.TB
	mgr      *Manager
	stateDir string
	nsSeq    int
	hostPort int // a port the host listens on at the gateway and hostAddr
}

func requireNet(t testing.TB) {
	testenv.Require(t, true, "ip")
}

// The scaffolding is shared with other packages' network tests.
func ipCmd(t testing.TB, args ...string) { t.Helper(); nstest.IP(t, args...) }
func ipQuiet(args ...string)             { nstest.IPQuiet(args...) }

// cleanWorld removes what a crashed earlier run may have left.
func cleanWorld() {
	ipQuiet("rule", "del", "priority", fmt.Sprint(rulePriority))
	ipQuiet("route", "flush", "table", fmt.Sprint(routeTable))
	ipQuiet("link", "del", upLink)
	ipQuiet("netns", "del", upNS)
	if links, err := netlink.LinkList(); err == nil { // overflow bridges and trunks
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, testBridge+".") {
				netlink.LinkDel(l)
			}
		}
	}
	if entries, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "sbxt-") {
				ipQuiet("netns", "del", e.Name())
			}
		}
	}
}

func newWorld(t testing.TB) *world {
	requireNet(t)
	cleanWorld()
	const forwarding = "/proc/sys/net/ipv4/ip_forward"
	wasForwarding, err := os.ReadFile(forwarding)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, stateDir: t.TempDir()}
	w.mgr = w.newManager()
	t.Cleanup(func() {
		if err := w.mgr.Destroy(context.Background()); err != nil {
			t.Errorf("destroy: %v", err)
		}
		w.mgr.Close()
		os.WriteFile(forwarding, wasForwarding, 0o644) // as the host had it
		cleanWorld()
	})

	// Upstream: its own veth to the host, the targets on its loopback, and
	// HTTP servers on ports 80 and 8080 of every address.
	ipCmd(t, "netns", "add", upNS)
	ipCmd(t, "link", "add", upLink, "type", "veth", "peer", "name", "eth0", "netns", upNS)
	ipCmd(t, "link", "set", upLink, "addrgenmode", "none")
	ipCmd(t, "addr", "add", upHostAddr.String(), "dev", upLink)
	ipCmd(t, "link", "set", upLink, "up")
	ipCmd(t, "-n", upNS, "addr", "add", upAddr.String(), "dev", "eth0")
	ipCmd(t, "-n", upNS, "link", "set", "eth0", "up")
	ipCmd(t, "-n", upNS, "link", "set", "lo", "up")
	for _, a := range targets {
		ipCmd(t, "-n", upNS, "addr", "add", a.String()+"/32", "dev", "lo")
	}
	ipCmd(t, "-n", upNS, "route", "add", testSubnet.String(), "via", upHostAddr.Addr().String())
	serveHTTP(t, nsPath(upNS), ":80")
	serveHTTP(t, nsPath(upNS), ":8080")

	// Everything forwarded from the test bridge goes to upstream, except
	// what is for another sandbox.
	ipCmd(t, "route", "add", "default", "via", upAddr.Addr().String(), "dev", upLink, "table", fmt.Sprint(routeTable))
	ipCmd(t, "route", "add", testSubnet.String(), "dev", testBridge, "table", fmt.Sprint(routeTable))
	ipCmd(t, "rule", "add", "priority", fmt.Sprint(rulePriority), "iif", testBridge, "lookup", fmt.Sprint(routeTable))

	// A host address that only the host has, for "the host is blocked".
	// (on the upstream link: this kernel has no dummy links)
	ipCmd(t, "addr", "add", hostAddr.String()+"/32", "dev", upLink)
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	w.hostPort = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	for _, a := range []netip.Addr{testSubnet.Addr().Next(), hostAddr} {
		serveHTTP(t, "", netip.AddrPortFrom(a, uint16(w.hostPort)).String())
	}
	return w
}

func (w *world) newManager() *Manager {
	m, err := New(Config{Bridge: testBridge, Table: testTable, Subnet: testSubnet, StateDir: w.stateDir, NameResolver: true})
	if err != nil {
		w.t.Fatalf("New: %v", err)
	}
	return m
}

func nsPath(name string) string { return nstest.Path(name) }

// newSandboxNS creates an empty network namespace standing in for a
// container's.
func (w *world) newSandboxNS() string {
	w.nsSeq++
	name := fmt.Sprintf("sbxt-s%d", w.nsSeq)
	ipCmd(w.t, "netns", "add", name)
	w.t.Cleanup(func() { ipQuiet("netns", "del", name) })
	return nsPath(name)
}

// sandbox creates a namespace, sets up its network and starts an HTTP
// server on port 80 in it.
func (w *world) sandbox(id string, p Policy) (*Attachment, string) {
	w.t.Helper()
	ns := w.newSandboxNS()
	a, err := w.mgr.Setup(context.Background(), id, ns, p)
	if err != nil {
		w.t.Fatalf("Setup %s: %v", id, err)
	}
	serveHTTP(w.t, ns, ":80")
	return a, ns
}

func inNS(path string, fn func() error) error            { return nstest.InNS(path, fn) }
func serveHTTP(t testing.TB, ns, addr string)            { t.Helper(); nstest.ServeHTTP(t, ns, addr) }
func get(ns string, addr netip.AddrPort) (string, error) { return nstest.Get(ns, addr) }
func ap(a netip.Addr, port int) netip.AddrPort           { return netip.AddrPortFrom(a, uint16(port)) }
func reach(t testing.TB, what, ns string, addr netip.AddrPort) {
	t.Helper()
	nstest.Reach(t, what, ns, addr)
}
func blocked(t testing.TB, what, ns string, addr netip.AddrPort) {
	t.Helper()
	nstest.Blocked(t, what, ns, addr)
}

// hostSnapshot is what the tests compare before and after: the host's
// links, addresses and routes, sbx's nftables objects and the state files.
type hostSnapshot struct {
	Links, Addrs, Routes, Nft, State []string
}

func snapshot(t testing.TB, stateDir string) hostSnapshot {
	t.Helper()
	var s hostSnapshot
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	foreign := foreignLinks(links)
	for _, l := range links {
		if !foreign[l.Attrs().Index] {
			s.Links = append(s.Links, l.Attrs().Name+"/"+l.Type())
		}
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if !foreign[a.LinkIndex] {
			s.Addrs = append(s.Addrs, fmt.Sprintf("%d %s", a.LinkIndex, a.IPNet))
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if !foreign[r.LinkIndex] {
			s.Routes = append(s.Routes, r.String())
		}
	}
	s.Nft = nftDump(t)
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		s.State = append(s.State, e.Name())
	}
	return s
}

// foreignLinks are the links (by index) of the other sbx instances that
// tests of other packages run on this host at the same time (go test runs
// packages in parallel): their bridges "sbxt<hex>" (internal/testenv) with
// their overflow bridges and trunks, runtime/local's world ("sbxl0" and
// its upstream "sbxlup0"), and the sandbox veths "sbxv..." on those. They
// come and go during a test; this package's own links (the world's bridge
// testBridge and its overflow links, their sandboxes' veths, the upstream
// link) are all kept.
func foreignLinks(links []netlink.Link) map[int]bool {
	ours := func(name string) bool { return name == testBridge || strings.HasPrefix(name, testBridge+".") }
	foreign := map[int]bool{}
	for _, l := range links {
		if name := l.Attrs().Name; foreignName(name) && !ours(name) && name != upLink {
			foreign[l.Attrs().Index] = true
		}
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "sbxv") && foreign[l.Attrs().MasterIndex] {
			foreign[l.Attrs().Index] = true
		}
	}
	return foreign
}

// foreignName says whether a link or table name is of another package's
// tests: "sbxt..." (internal/testenv's servers) or "sbxl..."
// (runtime/local's world).
func foreignName(name string) bool {
	return strings.HasPrefix(name, "sbxt") || strings.HasPrefix(name, "sbxl")
}

// nftDump lists every nftables table of the host but other test servers'
// with its chains, rules and set elements (rule handles left out: they only
// ever grow).
func nftDump(t testing.TB) []string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tb := range tables {
		if foreignName(tb.Name) && tb.Name != testTable {
			continue // another package's test server or world, see foreignLinks
		}
		prefix := fmt.Sprintf("table %d %s", tb.Family, tb.Name)
		out = append(out, prefix)
		chains, err := c.ListChainsOfTableFamily(tb.Family)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chains {
			if ch.Table.Name != tb.Name {
				continue
			}
			rules, err := c.GetRules(tb, ch)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				b, _ := json.Marshal(r.Exprs)
				out = append(out, prefix+" chain "+ch.Name+" "+string(b))
			}
			out = append(out, fmt.Sprintf("%s chain %s (%d rules)", prefix, ch.Name, len(rules)))
		}
		sets, err := c.GetSets(tb)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sets {
			els, err := c.GetSetElements(s)
			if err != nil {
				t.Fatal(err)
			}
			if s.Name == uplinksMap {
				// The host's addresses, which other packages' tests add
				// and remove (their bridges' gateways): no count.
				out = append(out, fmt.Sprintf("%s set %s (some elements)", prefix, s.Name))
				continue
			}
			out = append(out, fmt.Sprintf("%s set %s (%d elements)", prefix, s.Name, len(els)))
		}
	}
	return out
}
