package dns

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/sbx-run/sbx/internal/network"
	"github.com/sbx-run/sbx/internal/network/nstest"
	"github.com/sbx-run/sbx/internal/testenv"
)

// The test world, as in internal/network's tests: nothing here sends a
// packet off this machine. Sandboxes are namespaces attached by a real
// network.Manager; a policy-routing rule sends everything forwarded from
// the world's bridge into an "upstream" namespace, which holds the targets
// (on its loopback), an HTTP server on port 80 of each, and the zone's
// authoritative DNS server on its link address, which the host (where
// sbx's resolver runs) reaches over a directly connected route. Every name
// has a random suffix, so that parallel runs do not collide.
//
//	sandbox netns --veth-- [bridge, gateway .1 + resolver :53] host --veth-- upstream netns (zone :53, HTTP :80)
type world struct {
	t        testing.TB
	sfx      string
	mgr      *network.Manager
	res      *Server
	zone     *zoneServer
	up       string // upstream namespace path
	gw       netip.Addr
	hostAddr netip.Addr // an address only the host has, and a name for it
	hostPort int
	nsSeq    int
}

var (
	allowedAddr = netip.MustParseAddr("198.51.100.20")
	otherAddr   = netip.MustParseAddr("198.51.100.21")
	wwwAddr     = netip.MustParseAddr("198.51.100.22")
	cnameAddr   = netip.MustParseAddr("198.51.100.23")
	shortAddr   = netip.MustParseAddr("198.51.100.24")
	metaAddr    = netip.MustParseAddr("169.254.169.254")
	privAddr    = netip.MustParseAddr("10.99.0.10")
	worldTarget = []netip.Addr{allowedAddr, otherAddr, wwwAddr, cnameAddr, shortAddr, metaAddr, privAddr}
)

func newWorld(t testing.TB) *world {
	testenv.Require(t, true, "ip")
	var rb [3]byte
	rand.Read(rb[:])
	r := rb[0]
	for range 20 { // a subnet no other test's bridge has right now
		if !routed(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 236, r, 0}), 24)) &&
			!routed(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 237, r, 0}), 30)) {
			break
		}
		r++
	}
	sfx := fmt.Sprintf("%02x%02x", rb[1], rb[2])
	w := &world{t: t, sfx: sfx, zone: newZone(t)}
	// Ranges no other sbx test uses; the host address is in the
	// benchmarking range 198.18/15, which no default rule blocks.
	subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 236, r, 0}), 24)
	upHost := netip.AddrFrom4([4]byte{10, 237, r, 1})
	upAddr := netip.AddrFrom4([4]byte{10, 237, r, 2})
	w.hostAddr = netip.AddrFrom4([4]byte{198, 19, r, 77})
	bridge, upLink, upNS := "sbxd"+sfx, "sbxdu"+sfx, "sbxd"+sfx+"-up"
	// The rule must come before the main table's (priority 32766), or
	// the host's default route would take the sandboxes' packets.
	table := fmt.Sprint(3000 + int(rb[1])<<8 | int(rb[2]))
	prio := fmt.Sprint(1200 + int(r)%500)

	const forwarding = "/proc/sys/net/ipv4/ip_forward"
	wasForwarding, err := os.ReadFile(forwarding)
	if err != nil {
		t.Fatal(err)
	}
	w.gw = network.GatewayOf(subnet)
	w.mgr, err = network.New(network.Config{Bridge: bridge, Table: "sbxdns" + sfx, Subnet: subnet,
		StateDir: t.TempDir(), DNS: []netip.Addr{w.gw}, NameResolver: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.mgr.Destroy(context.Background()); err != nil {
			t.Errorf("destroy: %v", err)
		}
		w.mgr.Close()
		os.WriteFile(forwarding, wasForwarding, 0o644)
		nstest.IPQuiet("rule", "del", "priority", prio, "iif", bridge, "lookup", table)
		nstest.IPQuiet("route", "flush", "table", table)
		nstest.IPQuiet("link", "del", upLink)
		nstest.IPQuiet("netns", "del", upNS)
	})

	ip := func(args ...string) { nstest.IP(t, args...) }
	ip("netns", "add", upNS)
	w.up = nstest.Path(upNS)
	ip("link", "add", upLink, "type", "veth", "peer", "name", "eth0", "netns", upNS)
	ip("link", "set", upLink, "addrgenmode", "none")
	ip("addr", "add", upHost.String()+"/30", "dev", upLink)
	ip("link", "set", upLink, "up")
	ip("-n", upNS, "addr", "add", upAddr.String()+"/30", "dev", "eth0")
	ip("-n", upNS, "link", "set", "eth0", "up")
	ip("-n", upNS, "link", "set", "lo", "up")
	for _, a := range worldTarget {
		ip("-n", upNS, "addr", "add", a.String()+"/32", "dev", "lo")
	}
	ip("-n", upNS, "route", "add", subnet.String(), "via", upHost.String())
	nstest.ServeHTTP(t, w.up, ":80")
	ip("route", "add", "default", "via", upAddr.String(), "dev", upLink, "table", table)
	ip("route", "add", subnet.String(), "dev", bridge, "table", table)
	ip("rule", "add", "priority", prio, "iif", bridge, "lookup", table)
	// Before any packet: prove that what the sandboxes send goes upstream.
	sbxAddr := subnet.Addr().Next().Next()
	for _, a := range append(worldTarget, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("8.8.8.8")) {
		out, err := exec.Command("ip", "route", "get", a.String(), "from", sbxAddr.String(), "iif", bridge).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "dev "+upLink) {
			t.Fatalf("a sandbox's packet to %s would not go to the upstream namespace: %s %v", a, out, err)
		}
	}
	ip("addr", "add", w.hostAddr.String()+"/32", "dev", upLink)
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(w.hostAddr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	w.hostPort = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	nstest.ServeHTTP(t, "", netip.AddrPortFrom(w.hostAddr, uint16(w.hostPort)).String())
	if rr, err := mdns.NewRR("host.allowed.test. 60 IN A " + w.hostAddr.String()); err == nil {
		w.zone.records["host.allowed.test."] = []mdns.RR{rr}
	}

	// The zone's server, in upstream, on its link address.
	var pc net.PacketConn
	var zl net.Listener
	zoneAddr := netip.AddrPortFrom(upAddr, 53)
	if err := nstest.InNS(w.up, func() (err error) {
		if pc, err = net.ListenPacket("udp4", zoneAddr.String()); err != nil {
			return err
		}
		zl, err = net.Listen("tcp4", zoneAddr.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	serveZone(t, w.zone, pc, zl)

	w.res, err = Start(Config{Listen: netip.AddrPortFrom(w.gw, 53), Upstreams: []netip.AddrPort{zoneAddr},
		Sandboxes: w.mgr, MinTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.res.Close() })
	return w
}

// routed reports whether a route of the host overlaps p.
func routed(p netip.Prefix) bool {
	out, _ := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		if f[0] == "local" || f[0] == "broadcast" {
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		if q, err := netip.ParsePrefix(dst); err == nil && q.Bits() > 0 && q.Overlaps(p) {
			return true
		}
		if a, err := netip.ParseAddr(dst); err == nil && p.Contains(a) {
			return true
		}
	}
	return false
}

// sandbox attaches a new namespace with policy p.
func (w *world) sandbox(id string, p network.Policy) string {
	w.t.Helper()
	w.nsSeq++
	name := fmt.Sprintf("sbxd%s-s%d", w.sfx, w.nsSeq)
	nstest.IP(w.t, "netns", "add", name)
	w.t.Cleanup(func() { nstest.IPQuiet("netns", "del", name) })
	if _, err := w.mgr.Setup(context.Background(), id, nstest.Path(name), p); err != nil {
		w.t.Fatalf("Setup %s: %v", id, err)
	}
	return nstest.Path(name)
}

// resolve asks the gateway's resolver for name's A records from inside ns,
// as the sandbox's stub resolver would (its resolv.conf names the gateway).
func (w *world) resolve(ns, name string) ([]netip.Addr, int, error) {
	var r *mdns.Msg
	err := nstest.InNS(ns, func() (err error) {
		q := new(mdns.Msg)
		q.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
		c := &mdns.Client{Timeout: 3 * time.Second}
		r, _, err = c.Exchange(q, netip.AddrPortFrom(w.gw, 53).String())
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	var out []netip.Addr
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			ip, _ := netip.AddrFromSlice(a.A)
			out = append(out, ip.Unmap())
		}
	}
	return out, r.Rcode, nil
}

// mustResolve asserts that name resolves to want in ns.
func (w *world) mustResolve(ns, name string, want netip.Addr) {
	w.t.Helper()
	got, rcode, err := w.resolve(ns, name)
	if err != nil || rcode != mdns.RcodeSuccess || !slices.Contains(got, want) {
		w.t.Fatalf("resolve %s: %v %s %v, want %s", name, got, mdns.RcodeToString[rcode], err, want)
	}
}

func at(a netip.Addr) netip.AddrPort { return netip.AddrPortFrom(a, 80) }

func TestNameAllowList(t *testing.T) {
	w := newWorld(t)
	ns := w.sandbox("sb-names", network.Policy{AllowNames: []string{"allowed.test", "*.allowed.test"}})
	other := w.sandbox("sb-other-names", network.Policy{AllowNames: []string{"other.test"}})

	nstest.Blocked(t, "not resolved yet", ns, at(allowedAddr))
	w.mustResolve(ns, "allowed.test", allowedAddr)
	nstest.Reach(t, "resolved allowed name", ns, at(allowedAddr))

	if got, rcode, err := w.resolve(ns, "other.test"); err != nil || rcode != mdns.RcodeNameError || len(got) != 0 {
		t.Errorf("other.test: %v %s %v, want NXDOMAIN", got, mdns.RcodeToString[rcode], err)
	}
	nstest.Blocked(t, "other.test by address", ns, at(otherAddr))
	nstest.Blocked(t, "another sandbox's resolved address", other, at(allowedAddr))

	nstest.Blocked(t, "wildcard name not resolved yet", ns, at(wwwAddr))
	w.mustResolve(ns, "WWW.allowed.test", wwwAddr)
	nstest.Reach(t, "wildcard", ns, at(wwwAddr))
	w.mustResolve(ns, "cname.allowed.test", cnameAddr)
	nstest.Reach(t, "CNAME target", ns, at(cnameAddr))

	for name, addr := range map[string]netip.AddrPort{
		"meta.allowed.test":    at(metaAddr),
		"private.allowed.test": at(privAddr),
		"host.allowed.test":    netip.AddrPortFrom(w.hostAddr, uint16(w.hostPort)),
	} {
		w.mustResolve(ns, name, addr.Addr())
		nstest.Blocked(t, name+" resolves to a blocked address", ns, addr)
	}

	// The entry expires (TTL 1 s, MinTTL 1 s here); polled, not timed.
	w.mustResolve(ns, "short.allowed.test", shortAddr)
	nstest.Reach(t, "short TTL", ns, at(shortAddr))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := nstest.Get(ns, at(shortAddr)); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("short.allowed.test still open 30 s after its TTL")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestDenyEgressAndDNS(t *testing.T) {
	w := newWorld(t)
	open := w.sandbox("sb-open", network.Policy{})
	deny := w.sandbox("sb-deny", network.Policy{DenyEgress: true})
	noDNS := w.sandbox("sb-nodns", network.Policy{DenyEgress: true, DenyDNS: true})

	w.mustResolve(open, "other.test", otherAddr)
	nstest.Reach(t, "default policy", open, at(otherAddr))
	nstest.Blocked(t, "default policy, metadata", open, at(metaAddr))

	w.mustResolve(deny, "other.test", otherAddr)
	w.mustResolve(deny, "allowed.test", allowedAddr)
	nstest.Blocked(t, "deny_egress resolves but cannot connect", deny, at(otherAddr))
	nstest.Blocked(t, "deny_egress", deny, at(allowedAddr))

	if got, rcode, err := w.resolve(noDNS, "other.test"); err == nil {
		t.Errorf("deny_dns resolved: %v %s", got, mdns.RcodeToString[rcode])
	}
	// A torn-down sandbox's address is no one's: REFUSED.
	if err := w.mgr.Teardown(context.Background(), "sb-open"); err != nil {
		t.Fatal(err)
	}
	q := new(mdns.Msg)
	q.SetQuestion("other.test.", mdns.TypeA)
	if r := w.res.Resolve(context.Background(), netip.MustParseAddr("10.255.255.1"), q, true); r.Rcode != mdns.RcodeRefused {
		t.Errorf("unknown source: %s", mdns.RcodeToString[r.Rcode])
	}
}

// BenchmarkResolverLatency measures what the resolver adds to a query for
// an allow-listed name (firewall update included) over asking the zone
// directly, both from a sandbox namespace over UDP.
func BenchmarkResolverLatency(b *testing.B) {
	w := newWorld(b)
	ns := w.sandbox("sb-bench", network.Policy{AllowNames: []string{"*.allowed.test"}})
	open := w.sandbox("sb-bench-open", network.Policy{})
	var zone netip.AddrPort
	for _, up := range w.res.cfg.Upstreams {
		zone = up
	}
	for _, c := range []struct {
		name, ns string
		server   netip.AddrPort
	}{
		{"direct-from-host", "", zone},
		{"resolver-open", open, netip.AddrPortFrom(w.gw, 53)},
		{"resolver-allowlist", ns, netip.AddrPortFrom(w.gw, 53)},
	} {
		b.Run(c.name, func(b *testing.B) {
			err := nstest.InNS(c.ns, func() error {
				cl := &mdns.Client{Timeout: 3 * time.Second}
				conn, err := cl.Dial(c.server.String())
				if err != nil {
					return err
				}
				defer conn.Close()
				q := new(mdns.Msg)
				q.SetQuestion("www.allowed.test.", mdns.TypeA)
				for b.Loop() {
					r, _, err := cl.ExchangeWithConn(q, conn)
					if err != nil {
						return err
					}
					if r.Rcode != mdns.RcodeSuccess {
						return fmt.Errorf("rcode %s", mdns.RcodeToString[r.Rcode])
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}
