package local

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/network"
	"github.com/sbx-run/sbx/internal/osthread"
	"github.com/sbx-run/sbx/internal/runtime/runtimetest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/testenv"
)

// The test world, as internal/network's world_test.go builds it: no packet
// leaves this machine. Everything forwarded from the test bridge is routed
// (policy rule on the bridge) into an "upstream" namespace the test owns,
// which holds the "internet" address on its loopback.
//
//	sandbox --veth-- [bridge sbxl0 10.212.0.1/16] host --veth sbxlup0 10.213.0.1/30-- upstream (10.213.0.2; lo 198.51.100.10)
const (
	lnBridge   = "sbxl0"
	lnTable    = "sbxlocal"
	lnUpLink   = "sbxlup0"
	lnUpNS     = "sbxl-up"
	lnRouteTab = "2120"
	lnRulePrio = "1120"
)

var (
	lnSubnet  = netip.MustParsePrefix("10.212.0.0/16")
	lnGateway = netip.MustParseAddr("10.212.0.1")
	lnPublic  = netip.MustParseAddr("198.51.100.10") // "the internet", in upstream
)

type netWorld struct {
	mgr      *network.Manager
	hostPort int // the host listens here on the gateway address
}

func quietIP(args ...string) { exec.Command("ip", args...).Run() }

func mustIP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func cleanNetWorld() {
	quietIP("rule", "del", "priority", lnRulePrio)
	quietIP("route", "flush", "table", lnRouteTab)
	quietIP("link", "del", lnUpLink)
	quietIP("netns", "del", lnUpNS)
	quietIP("netns", "del", "sbxl-orphan")
}

// newNetWorld builds the world and a network manager for it; everything
// goes at cleanup.
func newNetWorld(t testing.TB) *netWorld {
	t.Helper()
	return newNetWorldSubnet(t, lnSubnet)
}

// newNetWorldSubnet builds the world with the sandboxes' subnet a part of
// lnSubnet that starts with it (its gateway is lnGateway too).
func newNetWorldSubnet(t testing.TB, subnet netip.Prefix) *netWorld {
	t.Helper()
	testenv.Require(t, true, "ip", "busybox")
	cleanNetWorld()
	const fwd = "/proc/sys/net/ipv4/ip_forward"
	wasFwd, err := os.ReadFile(fwd)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := network.New(network.Config{Bridge: lnBridge, Table: lnTable, Subnet: subnet, StateDir: t.TempDir()})
	if err != nil {
		t.Fatalf("network.New: %v", err)
	}
	w := &netWorld{mgr: mgr}
	t.Cleanup(func() {
		if err := mgr.Destroy(context.Background()); err != nil {
			t.Errorf("network Destroy: %v", err)
		}
		mgr.Close()
		os.WriteFile(fwd, wasFwd, 0o644)
		cleanNetWorld()
	})
	mustIP(t, "netns", "add", lnUpNS)
	mustIP(t, "link", "add", lnUpLink, "type", "veth", "peer", "name", "eth0", "netns", lnUpNS)
	mustIP(t, "addr", "add", "10.213.0.1/30", "dev", lnUpLink)
	mustIP(t, "link", "set", lnUpLink, "up")
	mustIP(t, "-n", lnUpNS, "addr", "add", "10.213.0.2/30", "dev", "eth0")
	mustIP(t, "-n", lnUpNS, "link", "set", "eth0", "up")
	mustIP(t, "-n", lnUpNS, "link", "set", "lo", "up")
	mustIP(t, "-n", lnUpNS, "addr", "add", lnPublic.String()+"/32", "dev", "lo")
	mustIP(t, "-n", lnUpNS, "route", "add", lnSubnet.String(), "via", "10.213.0.1")
	mustIP(t, "route", "add", "default", "via", "10.213.0.2", "dev", lnUpLink, "table", lnRouteTab)
	mustIP(t, "route", "add", lnSubnet.String(), "dev", lnBridge, "table", lnRouteTab)
	mustIP(t, "rule", "add", "priority", lnRulePrio, "iif", lnBridge, "lookup", lnRouteTab)

	// "The internet": busybox httpd in upstream, serving one file.
	www := t.TempDir()
	if err := os.WriteFile(www+"/index.html", []byte("upstream\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	httpd := exec.Command("ip", "netns", "exec", lnUpNS, testenv.BusyboxPath, "httpd", "-f", "-p", lnPublic.String()+":80", "-h", www)
	if err := httpd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { httpd.Process.Kill(); httpd.Wait() })

	// The host itself, on the sandboxes' gateway.
	ln, err := net.Listen("tcp", netip.AddrPortFrom(lnGateway, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	w.hostPort = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "host") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return w
}

func withNetwork(m *network.Manager) func(*Config) {
	return func(c *Config) { c.Network = m }
}

// netSandbox creates a sandbox with policy p.
func netSandbox(t *testing.T, rt *Runtime, p sandbox.NetworkPolicy) (string, sandbox.Agent) {
	t.Helper()
	ref, _ := env(t)
	id := runtimetest.NewID("net")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: ref, Network: p}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { rt.Delete(context.Background(), id) })
	ag, err := rt.Agent(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ag.Close() })
	return id, ag
}

// fetch sends an HTTP GET from the sandbox with nc (busybox's static wget
// crashes in glibc's resolver code); it returns the body, or "" on failure.
func fetch(t *testing.T, ag sandbox.Agent, addr netip.AddrPort) string {
	t.Helper()
	r := sh(t, ag, fmt.Sprintf("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 %s %d", addr.Addr(), addr.Port()))
	_, body, ok := strings.Cut(strings.ReplaceAll(r.Stdout, "\r\n", "\n"), "\n\n")
	if r.Exit.Code != 0 || !ok {
		t.Logf("GET %s: exit %d %q %q", addr, r.Exit.Code, r.Stdout, r.Stderr)
		return ""
	}
	return body
}

// TestSandboxNetwork runs under crun, whose container makes its namespace
// (the veth comes after), and gVisor, which joins one made and set up
// first (netnsFirst).
func TestSandboxNetwork(t *testing.T) {
	w := newNetWorld(t)
	for _, name := range []string{"crun", "runsc"} {
		t.Run(name, func(t *testing.T) { testSandboxNetwork(t, w, name) })
	}
}

func testSandboxNetwork(t *testing.T, w *netWorld, runtimeName string) {
	rt := newRuntime(t, runtimeName, withNetwork(w.mgr))

	a, agA := netSandbox(t, rt, sandbox.NetworkPolicy{})
	addrA, ok := rt.Address(a)
	if !ok || !lnSubnet.Contains(addrA) {
		t.Fatalf("sandbox address %v (%v), want one in %s", addrA, ok, lnSubnet)
	}
	t.Run("AddressAndDefaultRoute", func(t *testing.T) {
		if out := sh(t, agA, "ip -4 addr show eth0").Stdout; !strings.Contains(out, addrA.String()+"/32") {
			t.Errorf("eth0 in the sandbox: %q, want %s/32", out, addrA)
		}
		if out := sh(t, agA, "ip route").Stdout; !strings.Contains(out, "default via "+lnGateway.String()) {
			t.Errorf("routes in the sandbox: %q, want a default via %s", out, lnGateway)
		}
	})
	t.Run("EtcHosts", func(t *testing.T) {
		hosts := sh(t, agA, "cat /etc/hosts").Stdout
		for _, want := range []string{"127.0.0.1\tlocalhost\n", addrA.String() + "\t" + a + "\n"} {
			if !strings.Contains(hosts, want) {
				t.Errorf("/etc/hosts in the sandbox lacks %q:\n%s", want, hosts)
			}
		}
		if got := sh(t, agA, "cat /etc/hostname; hostname").Stdout; got != a+"\n"+a+"\n" {
			t.Errorf("/etc/hostname and hostname: %q, want %s twice", got, a)
		}
		// Names resolve through it: a server on localhost is reachable by name.
		sh(t, agA, "mkdir -p /www && echo local > /www/index.html && httpd -p 8080 -h /www")
		if got := sh(t, agA, "wget -q -O- http://localhost:8080/ && wget -q -O- http://$(hostname):8080/").Stdout; got != "local\nlocal\n" {
			t.Errorf("GET by localhost and by hostname: %q", got)
		}
	})
	t.Run("InternetReachable", func(t *testing.T) {
		if got := fetch(t, agA, netip.AddrPortFrom(lnPublic, 80)); got != "upstream\n" {
			t.Errorf("GET the upstream server: %q, want %q", got, "upstream\n")
		}
	})
	t.Run("HostBlocked", func(t *testing.T) {
		if got := fetch(t, agA, netip.AddrPortFrom(lnGateway, uint16(w.hostPort))); got != "" {
			t.Errorf("the host answered a sandbox: %q", got)
		}
	})
	t.Run("OtherSandboxBlocked", func(t *testing.T) {
		b, agB := netSandbox(t, rt, sandbox.NetworkPolicy{})
		addrB, _ := rt.Address(b)
		sh(t, agB, "mkdir -p /www && echo b > /www/index.html && httpd -p 80 -h /www")
		if got := fetch(t, agB, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 80)); got != "b\n" {
			t.Fatalf("sandbox B's own server: %q", got)
		}
		if got := fetch(t, agA, netip.AddrPortFrom(addrB, 80)); got != "" {
			t.Errorf("sandbox A reached sandbox B: %q", got)
		}
	})
	t.Run("SessionPeersReachEachOther", func(t *testing.T) {
		p := sandbox.NetworkPolicy{SessionPeers: true, PeerGroup: "session-1"}
		c, agC := netSandbox(t, rt, p)
		_, agD := netSandbox(t, rt, p)
		addrC, _ := rt.Address(c)
		sh(t, agC, "mkdir -p /www && echo c > /www/index.html && httpd -p 80 -h /www")
		if got := fetch(t, agD, netip.AddrPortFrom(addrC, 80)); got != "c\n" {
			t.Errorf("peer D could not reach peer C: %q", got)
		}
		if got := fetch(t, agA, netip.AddrPortFrom(addrC, 80)); got != "" {
			t.Errorf("non-peer A reached peer C: %q", got)
		}
	})
	t.Run("DenyEgress", func(t *testing.T) {
		_, ag := netSandbox(t, rt, sandbox.NetworkPolicy{DenyEgress: true})
		if got := fetch(t, ag, netip.AddrPortFrom(lnPublic, 80)); got != "" {
			t.Errorf("deny_egress sandbox reached the upstream server: %q", got)
		}
	})
	t.Run("AllowCIDR", func(t *testing.T) {
		_, ag := netSandbox(t, rt, sandbox.NetworkPolicy{AllowCIDRs: []sandbox.CIDRRule{{CIDR: "198.51.100.0/24", Ports: []int{80}}}})
		if got := fetch(t, ag, netip.AddrPortFrom(lnPublic, 80)); got != "upstream\n" {
			t.Errorf("allowed CIDR: %q", got)
		}
	})
	t.Run("BadPolicyRejected", func(t *testing.T) {
		ref, _ := env(t)
		_, err := rt.Create(context.Background(), sandbox.Spec{ID: runtimetest.NewID("bad"), Image: ref,
			Network: sandbox.NetworkPolicy{AllowCIDRs: []sandbox.CIDRRule{{CIDR: "10.0.0.1/8"}}}})
		if sandbox.KindOf(err) != sandbox.ErrInvalidArgument || !strings.Contains(err.Error(), "network.allow_cidrs[0].cidr") {
			t.Errorf("Create with a bad CIDR: %v, want InvalidArgument naming network.allow_cidrs[0].cidr", err)
		}
	})
}

// TestNetworkRecovery: a new Runtime keeps the networks of its running
// sandboxes and tears down those of sandboxes it does not have.
// It runs under crun and under gVisor, whose namespace sbx made first.
func TestNetworkRecovery(t *testing.T) {
	w := newNetWorld(t)
	for _, name := range []string{"crun", "runsc"} {
		t.Run(name, func(t *testing.T) { testNetworkRecovery(t, w, name) })
	}
}

func testNetworkRecovery(t *testing.T, w *netWorld, runtimeName string) {
	rt := newRuntime(t, runtimeName, withNetwork(w.mgr))
	id, _ := netSandbox(t, rt, sandbox.NetworkPolicy{})
	quietIP("netns", "del", "sbxl-orphan")
	mustIP(t, "netns", "add", "sbxl-orphan")
	t.Cleanup(func() { quietIP("netns", "del", "sbxl-orphan") })
	if _, err := w.mgr.Setup(context.Background(), "orphan", "/run/netns/sbxl-orphan", network.Policy{}); err != nil {
		t.Fatal(err)
	}
	rt2, err := New(context.Background(), rt.cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := w.mgr.Get("orphan"); err == nil {
		t.Error("the network of a sandbox the runtime does not have survived New")
	}
	if _, ok := rt2.Address(id); !ok {
		t.Error("the network of a running sandbox was torn down by New")
	}
	ag, err := rt2.Agent(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	if got := fetch(t, ag, netip.AddrPortFrom(lnPublic, 80)); got != "upstream\n" {
		t.Errorf("after New: %q", got)
	}
	if err := rt2.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if atts, _ := w.mgr.List(); len(atts) != 0 {
		t.Errorf("networks left after Delete: %+v", atts)
	}
}

// checkNetClean fails unless no sandbox network is left: no attachment, no
// host veth.
func checkNetClean(t *testing.T, w *netWorld) {
	t.Helper()
	if atts, _ := w.mgr.List(); len(atts) != 0 {
		t.Errorf("networks left: %+v", atts)
	}
	for i := 0; ; i++ {
		out, _ := exec.Command("ip", "-o", "link", "show", "master", lnBridge).Output()
		if len(strings.TrimSpace(string(out))) == 0 {
			return
		}
		if i == 50 {
			t.Errorf("veths left on the bridge: %s", out)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkCreateNetwork: Create (image cached) of a sandbox with a
// network until the first byte of an exec's output; the namespace is made
// and set up before the container joins it (netnsFirst), and under crun
// reused from the sandbox before (netpool.go).
func BenchmarkCreateNetwork(b *testing.B) {
	w := newNetWorld(b)
	for _, name := range []string{"crun", "runsc"} {
		b.Run(name, func(b *testing.B) {
			benchCreateToFirstOutput(b, newRuntime(b, name, withNetwork(w.mgr)))
		})
	}
}

// TestNetnsReuse: under crun, a default-policy sandbox that left nothing in
// its network namespace hands it, with its address, to the next
// default-policy sandbox; one that sent a packet, or had a policy of its
// own, does not; the kept ones go with Close.
func TestNetnsReuse(t *testing.T) {
	w := newNetWorld(t)
	rt := newRuntime(t, "crun", withNetwork(w.mgr))
	ctx := context.Background()
	netnsOf := func(ag sandbox.Agent) string {
		t.Helper()
		return strings.TrimSpace(sh(t, ag, "readlink /proc/self/ns/net").Stdout)
	}
	counts := func(want NetnsReuse) {
		t.Helper()
		if got := rt.NetnsReuse(); got != want {
			t.Errorf("namespace counters %+v, want %+v", got, want)
		}
	}

	a, agA := netSandbox(t, rt, sandbox.NetworkPolicy{})
	nsA, addrA := netnsOf(agA), mustAddress(t, rt, a)
	if err := rt.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	counts(NetnsReuse{Made: 1, Kept: 1})

	b, agB := netSandbox(t, rt, sandbox.NetworkPolicy{})
	if ns := netnsOf(agB); ns != nsA {
		t.Fatalf("sandbox B's network namespace %s, want A's %s", ns, nsA)
	}
	if addr := mustAddress(t, rt, b); addr != addrA {
		t.Errorf("sandbox B's address %s, want A's %s", addr, addrA)
	}
	counts(NetnsReuse{Made: 1, Kept: 1, Reused: 1})
	t.Run("LooksNew", func(t *testing.T) {
		// Its own sysfs, of its own namespace; no counter of A's.
		if got := sh(t, agB, "ls /sys/class/net; cat /sys/class/net/eth0/statistics/tx_packets /sys/class/net/lo/statistics/rx_packets").Stdout; got != "eth0\nlo\n0\n0\n" {
			t.Errorf("/sys/class/net and its counters in B: %q", got)
		}
		if got := sh(t, agB, "grep -c . /sys/devices/system/cpu/online").Stdout; got != "1\n" {
			t.Errorf("/sys/devices/system/cpu/online in B: %q", got)
		}
		hosts := sh(t, agB, "cat /etc/hosts").Stdout
		if !strings.Contains(hosts, addrA.String()+"\t"+b+"\n") || strings.Contains(hosts, a) {
			t.Errorf("/etc/hosts in B names B, not A:\n%s", hosts)
		}
		if id, _, ok := w.mgr.Lookup(addrA); !ok || id != b {
			t.Errorf("the address answers DNS for %q (%v), want %q", id, ok, b)
		}
	})
	t.Run("Works", func(t *testing.T) {
		if got := fetch(t, agB, netip.AddrPortFrom(lnPublic, 80)); got != "upstream\n" {
			t.Errorf("GET the upstream server from B: %q", got)
		}
		// Sandbox root has no capability in a namespace it does not
		// own, yet binds low ports; ICMP echo sockets are open to all.
		if r := sh(t, agB, "nc -l -p 80 -e echo bound & sleep 0.2; nc 127.0.0.1 80"); r.Stdout != "bound\n" {
			t.Errorf("bind port 80 in B: %q %q", r.Stdout, r.Stderr)
		}
		rt.mu.Lock()
		ns := rt.boxes[b].netns
		rt.mu.Unlock()
		var got []byte
		if err := osthread.InNetns(ns.f, func() (err error) {
			got, err = os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
			return err
		}); err != nil || string(got) != "0\t2147483647\n" {
			t.Errorf("ping_group_range in B: %q (%v)", got, err)
		}
	})

	// B sent packets: its namespace is not kept.
	if err := rt.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	counts(NetnsReuse{Made: 1, Kept: 1, Reused: 1, Dropped: 1})
	c, agC := netSandbox(t, rt, sandbox.NetworkPolicy{})
	if ns := netnsOf(agC); ns == nsA {
		t.Errorf("sandbox C got the namespace of B, which sent packets")
	}
	counts(NetnsReuse{Made: 2, Kept: 1, Reused: 1, Dropped: 1})

	// Policies change hands with the namespace. C left nothing: its
	// namespace goes to D, whose deny_egress holds at once; D sent
	// packets (its blocked attempt), so its namespace is not kept.
	nsC := netnsOf(agC)
	if err := rt.Delete(ctx, c); err != nil {
		t.Fatal(err)
	}
	d, agD := netSandbox(t, rt, sandbox.NetworkPolicy{DenyEgress: true})
	if ns := netnsOf(agD); ns != nsC {
		t.Errorf("sandbox D's network namespace %s, want C's %s", ns, nsC)
	}
	counts(NetnsReuse{Made: 2, Kept: 2, Reused: 2, Dropped: 1})
	if got := fetch(t, agD, netip.AddrPortFrom(lnPublic, 80)); got != "" {
		t.Errorf("deny_egress sandbox in a reused namespace reached the upstream server: %q", got)
	}
	if err := rt.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	counts(NetnsReuse{Made: 2, Kept: 2, Reused: 2, Dropped: 2})

	// E, with deny_egress, leaves nothing: its namespace is kept without
	// its policy, and F, with the default one, reaches the internet in it.
	e, agE := netSandbox(t, rt, sandbox.NetworkPolicy{DenyEgress: true})
	nsE := netnsOf(agE)
	if err := rt.Delete(ctx, e); err != nil {
		t.Fatal(err)
	}
	_, agF := netSandbox(t, rt, sandbox.NetworkPolicy{})
	if ns := netnsOf(agF); ns != nsE {
		t.Errorf("sandbox F's network namespace %s, want E's %s", ns, nsE)
	}
	if got := fetch(t, agF, netip.AddrPortFrom(lnPublic, 80)); got != "upstream\n" {
		t.Errorf("default sandbox in deny_egress E's namespace: GET the upstream server: %q", got)
	}
	counts(NetnsReuse{Made: 3, Kept: 3, Reused: 3, Dropped: 2})

	// One more kept namespace (G's); Close lets it go, with F's network
	// once F is deleted.
	g, _ := netSandbox(t, rt, sandbox.NetworkPolicy{})
	if err := rt.Delete(ctx, g); err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if atts, _ := w.mgr.List(); len(atts) != 1 || strings.HasPrefix(atts[0].SandboxID, KeptNetnsPrefix) {
		t.Errorf("networks after Close: %+v, want F's only", atts)
	}
}

func mustAddress(t *testing.T, rt *Runtime, id string) netip.Addr {
	t.Helper()
	a, ok := rt.Address(id)
	if !ok {
		t.Fatalf("sandbox %s has no address", id)
	}
	return a
}

// TestNetnsReuseFullSubnet: when the subnet has no address left but those
// of kept namespaces, a sandbox with a policy of its own gets one of them.
func TestNetnsReuseFullSubnet(t *testing.T) {
	// The smallest subnet allowed: 13 sandbox addresses, .2 to .14.
	w := newNetWorldSubnet(t, netip.MustParsePrefix("10.212.0.0/28"))
	rt := newRuntime(t, "crun", withNetwork(w.mgr))
	ctx := context.Background()
	ref, _ := env(t)
	var ids []string
	for {
		id := runtimetest.NewID("full")
		_, err := rt.Create(ctx, sandbox.Spec{ID: id, Image: ref})
		if sandbox.ReasonOf(err) == sandbox.ReasonSubnetExhausted {
			break
		}
		if err != nil || len(ids) == 13 {
			t.Fatalf("Create %d: %v, want SUBNET_EXHAUSTED after 13", len(ids)+1, err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids[:2] {
		if err := rt.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if got := rt.NetnsReuse(); got.Kept != 2 {
		t.Fatalf("namespace counters %+v, want 2 kept", got)
	}
	_, ag := netSandbox(t, rt, sandbox.NetworkPolicy{AllowCIDRs: []sandbox.CIDRRule{{CIDR: "198.51.100.0/24"}}})
	if got := fetch(t, ag, netip.AddrPortFrom(lnPublic, 80)); got != "upstream\n" {
		t.Errorf("GET the upstream server: %q", got)
	}
	if got := rt.NetnsReuse(); got.Reused != 1 {
		t.Errorf("namespace counters %+v, want 1 reused", got)
	}
}

// TestNetnsKeptAcrossRestart: a runtime started after one that kept a
// namespace (a killed server's) tears its network down; the old runtime
// then finds it gone and makes a new one.
func TestNetnsKeptAcrossRestart(t *testing.T) {
	w := newNetWorld(t)
	rt := newRuntime(t, "crun", withNetwork(w.mgr))
	ctx := context.Background()
	id, _ := netSandbox(t, rt, sandbox.NetworkPolicy{})
	if err := rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if atts, _ := w.mgr.List(); len(atts) != 1 || !strings.HasPrefix(atts[0].SandboxID, KeptNetnsPrefix) {
		t.Fatalf("networks after the delete: %+v, want one kept", atts)
	}
	if _, err := New(ctx, rt.cfg); err != nil {
		t.Fatalf("New: %v", err)
	}
	checkNetClean(t, w)
	_, ag := netSandbox(t, rt, sandbox.NetworkPolicy{})
	if got := fetch(t, ag, netip.AddrPortFrom(lnPublic, 80)); got != "upstream\n" {
		t.Errorf("GET the upstream server: %q", got)
	}
	if got := rt.NetnsReuse(); got.Reused != 0 || got.Made != 2 {
		t.Errorf("namespace counters %+v, want 2 made, none reused", got)
	}
}
