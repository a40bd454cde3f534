package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/runtime/local"
	"github.com/sbx-run/sbx/internal/testenv"
)

// The world TestNetwork builds, so that no packet can leave this machine:
// `sbx serve` runs in a network namespace of the test's ("srv") whose only
// routes lead into two more of the test's namespaces:
//
//	srv: lo (API on 0.0.0.0:apiPort, a host service on 0.0.0.0:8081),
//	     up0 10.254.0.1/30, md0 10.254.1.1/30, the sandbox bridge;
//	     default via 10.254.0.2; 169.254.169.254 via 10.254.1.2
//	up (the "internet"): eth0 10.254.0.2/30; on lo 198.51.100.10 (public),
//	     10.250.0.10 and 192.168.77.10 (private ranges); HTTP on :80 and
//	     :8080; routes the sandbox subnet back via srv (ingress tests)
//	md (a cloud metadata service): eth0 10.254.1.2/30; 169.254.169.254 on
//	     lo with HTTP on :80
//
// The test reaches the API, and plays the host and the internet, with
// sockets made inside those namespaces (testenv.DialerIn, ListenIn); the
// image comes from a registry the test serves inside srv too.
const (
	netPublic     = "198.51.100.10"
	netPrivate10  = "10.250.0.10"
	netPrivate192 = "192.168.77.10"
	netMetadata   = "169.254.169.254"
	netSrvUp      = "10.254.0.1"
	netHostPort   = 8081
)

type netWorld struct {
	srv, up, md string // namespace paths
	netw        testenv.Network
	s           *server
	apiPort     int
}

func ipCmd(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// serveText serves body over HTTP on addr inside the namespace at ns.
func serveText(t testing.TB, ns, addr, body string) {
	t.Helper()
	ln, err := testenv.ListenIn(ns, addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func newNetWorld(t *testing.T, serveArgs ...string) *netWorld {
	t.Helper()
	testenv.Require(t, true, "crun", "ip", "nsenter")
	var b [3]byte
	rand.Read(b[:])
	sfx := hex.EncodeToString(b[:])
	w := &netWorld{netw: testenv.NewNetwork(t)}
	names := map[string]*string{"sbxe-s-" + sfx: &w.srv, "sbxe-u-" + sfx: &w.up, "sbxe-m-" + sfx: &w.md}
	for name, p := range names {
		ipCmd(t, "netns", "add", name)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		*p = "/run/netns/" + name
		ipCmd(t, "-n", name, "link", "set", "lo", "up")
	}
	srv, up, md := filepath.Base(w.srv), filepath.Base(w.up), filepath.Base(w.md)
	subnet := w.netw.Subnet.String()
	for _, c := range [][]string{
		{"-n", srv, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", up},
		{"-n", srv, "addr", "add", netSrvUp + "/30", "dev", "up0"},
		{"-n", srv, "link", "set", "up0", "up"},
		{"-n", up, "addr", "add", "10.254.0.2/30", "dev", "eth0"},
		{"-n", up, "link", "set", "eth0", "up"},
		{"-n", up, "addr", "add", netPublic + "/32", "dev", "lo"},
		{"-n", up, "addr", "add", netPrivate10 + "/32", "dev", "lo"},
		{"-n", up, "addr", "add", netPrivate192 + "/32", "dev", "lo"},
		{"-n", up, "route", "add", subnet, "via", netSrvUp},
		{"-n", srv, "route", "add", "default", "via", "10.254.0.2"},
		{"-n", srv, "link", "add", "md0", "type", "veth", "peer", "name", "eth0", "netns", md},
		{"-n", srv, "addr", "add", "10.254.1.1/30", "dev", "md0"},
		{"-n", srv, "link", "set", "md0", "up"},
		{"-n", md, "addr", "add", "10.254.1.2/30", "dev", "eth0"},
		{"-n", md, "link", "set", "eth0", "up"},
		{"-n", md, "addr", "add", netMetadata + "/32", "dev", "lo"},
		{"-n", md, "route", "add", "default", "via", "10.254.1.1"},
		{"-n", srv, "route", "add", netMetadata + "/32", "via", "10.254.1.2"},
	} {
		ipCmd(t, c...)
	}
	serveText(t, w.up, "0.0.0.0:80", "upstream\n")
	serveText(t, w.up, "0.0.0.0:8080", "upstream-8080\n")
	serveText(t, w.md, netMetadata+":80", "metadata\n")
	serveText(t, w.srv, fmt.Sprintf("0.0.0.0:%d", netHostPort), "host\n")

	rootHost, nsHost, stop, err := testenv.ServeRegistryIn(w.srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	img, err := testenv.NewBusyboxImage()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testenv.Push(context.Background(), rootHost, "library/busybox:latest", img); err != nil {
		t.Fatal(err)
	}
	w.apiPort = 7420
	w.s = startServerWith(t, serverOptions{netns: w.srv, registry: nsHost, listen: fmt.Sprintf("0.0.0.0:%d", w.apiPort)}, append(w.netw.Args(), serveArgs...)...)
	return w
}

// gateway is the sandboxes' gateway: the bridge's address.
func (w *netWorld) gateway() string { return w.netw.Subnet.Addr().Next().String() }

// getFrom fetches http://addr/ with a socket made in namespace ns; "" when
// it cannot connect.
func getFrom(ns, addr string) string {
	c := testenv.HTTPClientIn(ns)
	c.Timeout = 5 * time.Second
	r, err := c.Get("http://" + addr + "/")
	if err != nil {
		return ""
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// fetchIn sends an HTTP GET from inside the sandbox with busybox nc and
// returns the body, or "" when the connection failed.
func fetchIn(t *testing.T, ctx context.Context, sb *sbx.Sandbox, addr string, port int) string {
	t.Helper()
	p, err := sb.Exec(ctx, []string{"sh", "-c", fmt.Sprintf("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 %s %d", addr, port)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Result()
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(strings.ReplaceAll(string(res.Stdout), "\r\n", "\n"), "\n\n")
	if res.ExitCode != 0 || !ok {
		return ""
	}
	return body
}

// runNet starts an idle busybox sandbox with opts and waits until it runs.
func runNet(t *testing.T, ctx context.Context, run func(context.Context, ...sbx.RunOption) (*sbx.Sandbox, error), opts ...sbx.RunOption) *sbx.Sandbox {
	t.Helper()
	sb, err := run(ctx, append([]sbx.RunOption{sbx.Image("busybox")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	return sb
}

// serveIn starts busybox httpd on port 80 in the sandbox, serving body.
func serveIn(t *testing.T, ctx context.Context, sb *sbx.Sandbox, body string) {
	t.Helper()
	p, err := sb.Exec(ctx, []string{"sh", "-c", "mkdir -p /www && echo " + body + " > /www/index.html && httpd -p 80 -h /www"}, sbx.Check())
	if err == nil {
		_, err = p.Result()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func addrOf(t *testing.T, ctx context.Context, sb *sbx.Sandbox) string {
	t.Helper()
	info, err := sb.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.Address
}

func TestNetwork(t *testing.T) {
	w := newNetWorld(t)
	c := w.s.client()
	ctx := ctxT(t, 8*time.Minute)
	api := fmt.Sprintf("%d", w.apiPort)

	// The world works: from the server's namespace every target answers.
	for addr, want := range map[string]string{
		netPublic + ":80": "upstream\n", netPublic + ":8080": "upstream-8080\n", netPrivate10 + ":80": "upstream\n",
		netPrivate192 + ":80": "upstream\n", netMetadata + ":80": "metadata\n", fmt.Sprintf("%s:%d", netSrvUp, netHostPort): "host\n",
	} {
		if got := getFrom(w.srv, addr); got != want {
			t.Fatalf("the test world: GET %s from the server's namespace: %q, want %q", addr, got, want)
		}
	}

	a := runNet(t, ctx, c.Run)
	t.Run("DefaultReachesUpstream", func(t *testing.T) {
		if got := fetchIn(t, ctx, a, netPublic, 80); got != "upstream\n" {
			t.Errorf("GET the upstream server: %q, want %q", got, "upstream\n")
		}
	})
	t.Run("DefaultBlocksMetadataHostAndPrivate", func(t *testing.T) {
		for _, target := range []struct {
			addr string
			port int
		}{
			{netMetadata, 80},
			{w.gateway(), w.apiPort}, {netSrvUp, w.apiPort}, // the API port on host addresses
			{w.gateway(), netHostPort}, {netSrvUp, netHostPort}, // another host service
			{netPrivate10, 80}, {netPrivate192, 80},
		} {
			if got := fetchIn(t, ctx, a, target.addr, target.port); got != "" {
				t.Errorf("a default sandbox reached %s:%d: %q", target.addr, target.port, got)
			}
		}
		// Blocked by the firewall, not for want of a listener: the API
		// answers on the gateway address from the host itself.
		hc := testenv.HTTPClientIn(w.srv)
		r, err := hc.Get("http://" + w.gateway() + ":" + api + "/healthz")
		if err != nil {
			t.Fatalf("the API on the gateway address, from the host: %v", err)
		}
		r.Body.Close()
	})

	b := runNet(t, ctx, c.Run)
	serveIn(t, ctx, b, "b")
	addrB := addrOf(t, ctx, b)
	t.Run("SandboxesIsolated", func(t *testing.T) {
		if got := getFrom(w.srv, addrB+":80"); got != "b\n" {
			t.Fatalf("the host could not reach sandbox B's server: %q", got)
		}
		if got := fetchIn(t, ctx, a, addrB, 80); got != "" {
			t.Errorf("sandbox A reached sandbox B: %q", got)
		}
	})
	t.Run("SessionPeers", func(t *testing.T) {
		sess, err := c.NewSession(ctx, sbx.SandboxDefaults{Image: "busybox", Network: &sbx.Network{AllowSessionPeers: true}})
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close(context.WithoutCancel(ctx))
		p1 := runNet(t, ctx, sess.Run)
		p2 := runNet(t, ctx, sess.Run)
		serveIn(t, ctx, p1, "peer")
		addr1 := addrOf(t, ctx, p1)
		if got := fetchIn(t, ctx, p2, addr1, 80); got != "peer\n" {
			t.Errorf("a session peer could not reach the other: %q", got)
		}
		if got := fetchIn(t, ctx, a, addr1, 80); got != "" {
			t.Errorf("a sandbox outside the session reached a peer: %q", got)
		}
	})
	denied := runNet(t, ctx, c.Run, sbx.Network{DenyEgress: true})
	t.Run("DenyEgress", func(t *testing.T) {
		p, err := denied.Exec(ctx, []string{"sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 " + netPublic + " 80"})
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Result()
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode == 0 || len(res.Stdout) > 0 {
			t.Errorf("deny_egress: nc exited %d with %q, want a failed connect", res.ExitCode, res.Stdout)
		}
	})
	allowed := runNet(t, ctx, c.Run, sbx.Network{AllowCIDRs: []sbx.CIDRRule{{CIDR: "198.51.100.0/24", Ports: []int{80}}}})
	t.Run("AllowCIDRPort", func(t *testing.T) {
		if got := fetchIn(t, ctx, allowed, netPublic, 80); got != "upstream\n" {
			t.Errorf("the allowed CIDR and port: %q", got)
		}
		if got := fetchIn(t, ctx, allowed, netPublic, 8080); got != "" {
			t.Errorf("the allowed CIDR on another port: %q", got)
		}
		if got := fetchIn(t, ctx, allowed, netMetadata, 80); got != "" {
			t.Errorf("outside the allowed CIDR: %q", got)
		}
	})
	t.Run("DenyIngress", func(t *testing.T) {
		closed := runNet(t, ctx, c.Run, sbx.Network{DenyIngress: true})
		serveIn(t, ctx, closed, "closed")
		addrClosed := addrOf(t, ctx, closed)
		if got := getFrom(w.up, addrB+":80"); got != "b\n" {
			t.Errorf("from outside the host, a default sandbox's server: %q, want %q", got, "b\n")
		}
		if got := getFrom(w.up, addrClosed+":80"); got != "" {
			t.Errorf("from outside the host, a deny_ingress sandbox answered: %q", got)
		}
		if got := getFrom(w.srv, addrClosed+":80"); got != "closed\n" {
			t.Errorf("the host (sbx's proxy) could not reach a deny_ingress sandbox: %q", got)
		}
	})
	t.Run("Reported", func(t *testing.T) {
		info, err := allowed.Refresh(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ip, err := netip.ParseAddr(info.Address)
		if err != nil || !w.netw.Subnet.Contains(ip) {
			t.Errorf("address %q, want one in %s", info.Address, w.netw.Subnet)
		}
		if r := info.Network.AllowCIDRs; len(r) != 1 || r[0].CIDR != "198.51.100.0/24" || !slices.Equal(r[0].Ports, []int{80}) {
			t.Errorf("effective policy on Get: %+v", info.Network)
		}
		if info, _ := denied.Refresh(ctx); !info.Network.DenyEgress {
			t.Errorf("effective policy of the deny_egress sandbox on Get: %+v", info.Network)
		}
		out, errOut, code := w.s.cli("", "inspect", allowed.ID())
		var views []struct {
			Address string `json:"address"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &views) != nil || len(views) != 1 || views[0].Address != info.Address {
			t.Errorf("sbx inspect: exit %d, %s %s; want address %s", code, out, errOut, info.Address)
		}
	})
	t.Run("SecondServerRefused", func(t *testing.T) {
		other := testenv.NewNetwork(t)
		for _, c := range []struct {
			name string
			args []string
			want []string
		}{
			{"same bridge and table", w.netw.Args(), []string{"in use by another sbx serve", "--network-bridge", "--network-subnet", "--network-table", "--network none"}},
			{"subnet overlapping a host route", []string{"--network-bridge", other.Bridge, "--network-table", other.Table, "--network-subnet", "10.254.0.0/24"},
				[]string{"overlaps", "10.254.0.1/30", "--network-subnet"}},
		} {
			out := w.serveOnce(t, c.args...)
			for _, want := range c.want {
				if !strings.Contains(out, want) {
					t.Errorf("%s: sbx serve said %q, want it to say %q", c.name, out, want)
				}
			}
		}
	})
	t.Run("HostCleanAfter50", func(t *testing.T) { testNetworkChurn(t, ctx, w, c) })
}

// serveOnce runs another `sbx serve` with args in the server's namespace,
// expects it to fail at start, and returns its output.
func (w *netWorld) serveOnce(t *testing.T, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + w.srv, w.s.bin, "serve",
		"--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--agent-path", w.s.agent,
		"--credentials-path", filepath.Join(dir, "credentials")}, args...)...)
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("a second sbx serve with %v started (or hung): %v\n%s", args, err, out)
	}
	return string(out)
}

// TestNetworkRunsc: the same world with gVisor, whose Sentry serves a
// network namespace sbx made and set up before it booted: the default
// policy, metadata, deny_egress and the reported address, through the
// real server.
func TestNetworkRunsc(t *testing.T) {
	testenv.Require(t, true, "runsc")
	w := newNetWorld(t, "--runtime", "runsc")
	c := w.s.client()
	ctx := ctxT(t, 5*time.Minute)
	a := runNet(t, ctx, c.Run)
	if got := fetchIn(t, ctx, a, netPublic, 80); got != "upstream\n" {
		t.Errorf("GET the upstream server under gVisor: %q, want %q", got, "upstream\n")
	}
	for _, target := range []string{netMetadata, netPrivate10, w.gateway()} {
		if got := fetchIn(t, ctx, a, target, 80); got != "" {
			t.Errorf("a default gVisor sandbox reached %s:80: %q", target, got)
		}
	}
	// Its eth0 has an address of the subnet, the one Get reports.
	p, err := a.Exec(ctx, []string{"ip", "-4", "-o", "addr", "show", "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Result()
	if err != nil {
		t.Fatal(err)
	}
	prefix := strings.TrimSuffix(w.netw.Subnet.Addr().String(), "0")
	if !strings.Contains(string(res.Stdout), " inet "+prefix) {
		t.Errorf("eth0 of a gVisor sandbox: %q, want an address in %s", res.Stdout, w.netw.Subnet)
	}
	info, err := a.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Address == "" || !strings.Contains(string(res.Stdout), " inet "+info.Address+"/") {
		t.Errorf("Get reports address %q for a gVisor sandbox whose eth0 says %q", info.Address, res.Stdout)
	}
	denied := runNet(t, ctx, c.Run, sbx.Network{DenyEgress: true})
	if got := fetchIn(t, ctx, denied, netPublic, 80); got != "" {
		t.Errorf("a deny_egress gVisor sandbox reached upstream: %q", got)
	}
}

// netHostState is what sandbox networks could leave behind.
type netHostState struct {
	Links, Nft, StateFiles, ServerMounts, RootMounts, NetNS []string
}

// keptNetworks describes the networks the server keeps for reuse
// (local.KeptNetnsPrefix): theirs until it stops, so hostState leaves
// them out. It returns their state files, host links, the hex forms of
// their addresses and link names (as nftState prints set elements) and
// their namespaces (as readlink shows them).
func (w *netWorld) keptNetworks() (files, links, hexes, netns []string) {
	dir := filepath.Join(local.RunRootOf(w.s.dataDir), local.RunRootNetwork)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		var a struct {
			ID    string     `json:"sandbox_id"`
			Addr  netip.Addr `json:"addr"`
			Link  string     `json:"host_link"`
			NetNS string     `json:"netns"`
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || json.Unmarshal(b, &a) != nil || !strings.HasPrefix(a.ID, local.KeptNetnsPrefix) {
			continue
		}
		files = append(files, e.Name())
		links = append(links, a.Link)
		a4 := a.Addr.As4()
		hexes = append(hexes, hex.EncodeToString(a4[:]), hex.EncodeToString([]byte(a.Link)))
		if l, err := os.Readlink(a.NetNS); err == nil {
			netns = append(netns, "fd "+l)
		}
	}
	return files, links, hexes, netns
}

func (w *netWorld) hostState(t *testing.T) netHostState {
	t.Helper()
	var s netHostState
	keptFiles, keptLinks, keptHexes, keptNetns := w.keptNetworks()
	isKept := func(v string, of []string, match func(string, string) bool) bool {
		return slices.ContainsFunc(of, func(k string) bool { return match(v, k) })
	}
	out, err := exec.Command("ip", "-n", filepath.Base(w.srv), "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 1 && !isKept(f[1], keptLinks, strings.HasPrefix) {
			s.Links = append(s.Links, strings.TrimSuffix(f[1], ":"))
		}
	}
	for _, l := range nftState(t, w.srv, w.netw.Table) {
		if isKept(l, keptHexes, strings.Contains) {
			continue
		}
		// A set's count changes with the kept networks' elements; each
		// element has a line of its own.
		if i := strings.LastIndex(l, " ("); i > 0 && strings.HasSuffix(l, " elements)") {
			l = l[:i]
		}
		s.Nft = append(s.Nft, l)
	}
	entries, _ := os.ReadDir(filepath.Join(local.RunRootOf(w.s.dataDir), "network"))
	for _, e := range entries {
		if !slices.Contains(keptFiles, e.Name()) {
			s.StateFiles = append(s.StateFiles, e.Name())
		}
	}
	mountsOf := func(pid string, keep func(string) bool) []string {
		b, _ := os.ReadFile("/proc/" + pid + "/mountinfo")
		var out []string
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if i := slices.Index(f, "-"); len(f) > 4 && i > 0 && keep(l) {
				out = append(out, f[4]+" "+strings.Join(f[i+1:], " "))
			}
		}
		slices.Sort(out)
		return out
	}
	s.ServerMounts = mountsOf(strconv.Itoa(w.s.servingPID()), func(string) bool { return true })
	// In the root mount namespace: anything under the data dir, and
	// network namespaces bind-mounted anywhere but /run/netns (where other
	// tests on this host keep theirs).
	s.RootMounts = mountsOf("1", func(l string) bool {
		f := strings.Fields(l)
		return strings.Contains(l, w.s.dataDir) || strings.Contains(l, " nsfs ") && len(f) > 4 && !strings.HasPrefix(f[4], "/run/netns/")
	})
	// Network namespaces held by the server and everything below it
	// (sandboxes, runtimes), as processes or as open files.
	for _, pid := range descendantsOf(w.s.cmd.Process.Pid) {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil {
			s.NetNS = append(s.NetNS, ns)
		}
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
		for _, fd := range fds {
			if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "net:[") && !slices.Contains(keptNetns, "fd "+l) {
				s.NetNS = append(s.NetNS, "fd "+l)
			}
		}
	}
	slices.Sort(s.NetNS)
	s.NetNS = slices.Compact(s.NetNS)
	return s
}

// nftState describes the server's nftables tables named table in the
// namespace at ns: every chain with its rules, every set with its elements
// (read over netlink, so the nft command is not needed).
func nftState(t *testing.T, ns, table string) []string {
	t.Helper()
	f, err := os.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChains()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tb := range tables {
		if tb.Name != table {
			continue
		}
		for _, ch := range chains {
			if ch.Table.Name != tb.Name || ch.Table.Family != tb.Family {
				continue
			}
			rules, err := c.GetRules(tb, ch)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				b, _ := json.Marshal(r.Exprs)
				out = append(out, fmt.Sprintf("%d %s rule %s", tb.Family, ch.Name, b))
			}
			out = append(out, fmt.Sprintf("%d chain %s (%d rules)", tb.Family, ch.Name, len(rules)))
		}
		sets, err := c.GetSets(tb)
		if err != nil {
			t.Fatal(err)
		}
		for _, set := range sets {
			elems, err := c.GetSetElements(set)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range elems {
				v := ""
				if e.VerdictData != nil {
					v = e.VerdictData.Chain
				}
				out = append(out, fmt.Sprintf("%d set %s %x %s", tb.Family, set.Name, e.Key, v))
			}
			out = append(out, fmt.Sprintf("%d set %s (%d elements)", tb.Family, set.Name, len(elems)))
		}
	}
	if len(out) == 0 {
		t.Fatalf("no nftables table %s in the server's namespace", table)
	}
	slices.Sort(out)
	return out
}

// descendantsOf returns pid and every process below it.
func descendantsOf(pid int) []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The fields after the command name (which may hold spaces).
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) > 1 {
				parent[p], _ = strconv.Atoi(f[1])
			}
		}
	}
	out := []int{pid}
	for changed := true; changed; {
		changed = false
		for p, pp := range parent {
			if slices.Contains(out, pp) && !slices.Contains(out, p) {
				out = append(out, p)
				changed = true
			}
		}
	}
	return out
}

// testNetworkChurn: 50 sandboxes with networks come and go (a third
// stopped mid-create), and the host is as before.
func testNetworkChurn(t *testing.T, ctx context.Context, w *netWorld, c *sbx.Client) {
	before := w.hostState(t)
	t.Logf("before: %d links, %d nft lines, %d IPAM state files, %d server mounts, %d network namespaces",
		len(before.Links), len(before.Nft), len(before.StateFiles), len(before.ServerMounts), len(before.NetNS))
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	sem := make(chan struct{}, 5)
	for i := range 50 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			sb, err := c.Run(ctx, sbx.Image("busybox"), sbx.Tags("churn"))
			if err != nil {
				errs <- err
				return
			}
			if i%3 == 0 {
				// Mid-create: stopped before it ran.
				if err := sb.Stop(ctx); err != nil {
					errs <- fmt.Errorf("stop mid-create: %w", err)
				}
			} else if err := sb.Wait(ctx); err != nil {
				errs <- err
			} else if i%10 == 1 {
				if p, err := sb.Exec(ctx, []string{"sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 " + netPublic + " 80"}); err == nil {
					if res, err := p.Result(); err != nil || !strings.Contains(string(res.Stdout), "upstream") {
						errs <- fmt.Errorf("churn sandbox %s could not reach upstream: %v %q", sb.ID(), err, res.Stdout)
					}
				}
			}
			if err := sb.Delete(context.WithoutCancel(ctx)); err != nil {
				errs <- fmt.Errorf("delete %s: %w", sb.ID(), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var after netHostState
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		after = w.hostState(t)
		if equalState(before, after) || time.Now().After(deadline) {
			break
		}
	}
	if !equalState(before, after) {
		diff := func(name string, a, b []string) {
			for _, x := range b {
				if !slices.Contains(a, x) {
					t.Errorf("%s: new after 50 sandboxes: %s", name, x)
				}
			}
			for _, x := range a {
				if !slices.Contains(b, x) {
					t.Errorf("%s: gone after 50 sandboxes: %s", name, x)
				}
			}
		}
		diff("link", before.Links, after.Links)
		diff("nft", before.Nft, after.Nft)
		diff("IPAM state file", before.StateFiles, after.StateFiles)
		diff("server mount", before.ServerMounts, after.ServerMounts)
		diff("root mount", before.RootMounts, after.RootMounts)
		diff("netns", before.NetNS, after.NetNS)
	}
}

func equalState(a, b netHostState) bool {
	return slices.Equal(a.Links, b.Links) && slices.Equal(a.Nft, b.Nft) && slices.Equal(a.StateFiles, b.StateFiles) &&
		slices.Equal(a.ServerMounts, b.ServerMounts) && slices.Equal(a.RootMounts, b.RootMounts) && slices.Equal(a.NetNS, b.NetNS)
}
