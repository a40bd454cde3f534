package dns

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/sbx-run/sbx/internal/network"
)

func TestAllowed(t *testing.T) {
	list := []string{"api.example.com", "*.Allowed.TEST", "exact.test."}
	for name, want := range map[string]bool{
		"api.example.com":           true,
		"API.Example.COM.":          true,
		"x.api.example.com":         false, // exact names do not cover their subdomains
		"example.com":               false,
		"allowed.test":              false, // a wildcard is strictly below
		"a.allowed.test":            true,
		"a.b.ALLOWED.test.":         true,
		"xallowed.test":             false,
		"exact.test":                true,
		"_srv._tcp.a.allowed.test":  true,
		`evil\.allowed.test`:        false, // one label "evil.allowed" under test.
		`a\046allowed.test`:         false,
		"a..allowed.test":           false,
		".allowed.test":             false,
		"a.allowed.test..":          false,
		"":                          false,
		"a b.allowed.test":          false,
		"a.allowed.test.other.test": false,
		"allowed.test.evil.com":     false,
	} {
		if got := Allowed(list, name); got != want {
			t.Errorf("Allowed(%q) = %v, want %v", name, got, want)
		}
	}
	long := ""
	for range 64 {
		long += "a"
	}
	if Allowed([]string{"*.allowed.test"}, long+".allowed.test") {
		t.Error("a 64-byte label matched")
	}
}

func TestParseUpstream(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.53":        "192.0.2.53:53",
		"127.0.0.53":        "127.0.0.53:53",
		"192.0.2.53:5353":   "192.0.2.53:5353",
		"[2001:db8::1]:53":  "[2001:db8::1]:53",
		"2001:db8::1":       "[2001:db8::1]:53",
		"dns.example.com":   "",
		"192.0.2.53:0":      "",
		"192.0.2.53:999999": "",
	} {
		got, err := ParseUpstream(in)
		if want == "" {
			if err == nil {
				t.Errorf("ParseUpstream(%q) = %s, want an error", in, got)
			}
			continue
		}
		if err != nil || got.String() != want {
			t.Errorf("ParseUpstream(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
}

// fakeSandboxes is a network of two sandboxes that records what the
// resolver opens.
type fakeSandboxes struct {
	mu      sync.Mutex
	boxes   map[netip.Addr]fakeBox
	allowed map[string][]netip.Addr
	ttls    map[string]time.Duration
	fail    error
}

type fakeBox struct {
	id string
	p  network.Policy
}

func (f *fakeSandboxes) set(a netip.Addr, b fakeBox) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.boxes[a] = b
}

func (f *fakeSandboxes) Lookup(a netip.Addr) (string, network.Policy, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.boxes[a]
	return b.id, b.p, ok
}

func (f *fakeSandboxes) AllowResolved(id string, addrs []netip.Addr, ttl time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.allowed[id] = append(f.allowed[id], addrs...)
	f.ttls[id] = ttl
	return nil
}

var (
	openBox    = netip.MustParseAddr("10.1.0.2")
	listBox    = netip.MustParseAddr("10.1.0.3")
	noDNSBox   = netip.MustParseAddr("10.1.0.4")
	strangerIP = netip.MustParseAddr("10.1.0.99")
)

type unitWorld struct {
	srv  *Server
	zone *zoneServer
	sbx  *fakeSandboxes
}

func newUnitWorld(t *testing.T, mod func(*Config)) *unitWorld {
	z := newZone(t)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	serveZone(t, z, pc, ln)
	t.Cleanup(func() {
		select {
		case <-z.unblock:
		default:
			close(z.unblock)
		}
	})
	f := &fakeSandboxes{
		boxes: map[netip.Addr]fakeBox{
			openBox:  {"open", network.Policy{}},
			listBox:  {"list", network.Policy{AllowNames: []string{"allowed.test", "*.allowed.test"}}},
			noDNSBox: {"nodns", network.Policy{DenyEgress: true, DenyDNS: true}},
		},
		allowed: map[string][]netip.Addr{},
		ttls:    map[string]time.Duration{},
	}
	cfg := Config{
		Listen:    netip.MustParseAddrPort("127.0.0.1:0"),
		Upstreams: []netip.AddrPort{pc.LocalAddr().(*net.UDPAddr).AddrPort()},
		Sandboxes: f,
		Logger:    slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &unitWorld{srv: s, zone: z, sbx: f}
}

func (w *unitWorld) ask(src netip.Addr, name string, qtype uint16) *mdns.Msg {
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), qtype)
	q.SetEdns0(1232, false)
	return w.srv.Resolve(context.Background(), src, q, true)
}

func aRecords(r *mdns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

func TestResolvePolicies(t *testing.T) {
	w := newUnitWorld(t, nil)

	r := w.ask(strangerIP, "allowed.test", mdns.TypeA)
	if r.Rcode != mdns.RcodeRefused {
		t.Errorf("unknown source: rcode %s, want REFUSED", mdns.RcodeToString[r.Rcode])
	}
	if r := w.ask(noDNSBox, "allowed.test", mdns.TypeA); r.Rcode != mdns.RcodeRefused {
		t.Errorf("deny_dns: rcode %s, want REFUSED", mdns.RcodeToString[r.Rcode])
	}
	// No allow-list: everything is forwarded, nothing opened.
	if r := w.ask(openBox, "other.test", mdns.TypeA); r.Rcode != mdns.RcodeSuccess || !slices.Equal(aRecords(r), []string{"198.51.100.21"}) {
		t.Errorf("open sandbox, other.test: %v", r)
	}
	if len(w.sbx.allowed["open"]) != 0 {
		t.Errorf("opened %v for a sandbox without allow_names", w.sbx.allowed["open"])
	}

	// Allow-list: other names are NXDOMAIN without asking upstream.
	before := len(w.zone.asked())
	r = w.ask(listBox, "other.test", mdns.TypeA)
	if r.Rcode != mdns.RcodeNameError || len(r.Answer) != 0 {
		t.Errorf("allow-listed sandbox, other.test: %v", r)
	}
	if o := r.IsEdns0(); o == nil || len(o.Option) != 1 || o.Option[0].(*mdns.EDNS0_EDE).InfoCode != mdns.ExtendedErrorCodeBlocked {
		t.Errorf("NXDOMAIN without the Blocked extended error: %v", r)
	}
	if r := w.ask(listBox, `evil\.allowed.test`, mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Errorf("escaped dot: %v", r)
	}
	if got := w.zone.asked(); len(got) != before {
		t.Errorf("upstream was asked for %v", got[before:])
	}

	r = w.ask(listBox, "allowed.test", mdns.TypeA)
	if !slices.Equal(aRecords(r), []string{"198.51.100.20"}) || len(r.Extra) != 1 || r.Extra[0].Header().Rrtype != mdns.TypeOPT {
		t.Errorf("allowed.test: %v (glue must be dropped, EDNS kept)", r)
	}
	r = w.ask(listBox, "www.ALLOWED.test", mdns.TypeA)
	if !slices.Equal(aRecords(r), []string{"198.51.100.22"}) {
		t.Errorf("wildcard: %v", r)
	}
	// A CNAME's target need not match; its address is opened.
	r = w.ask(listBox, "cname.allowed.test", mdns.TypeA)
	if !slices.Equal(aRecords(r), []string{"198.51.100.23"}) || len(r.Answer) != 2 {
		t.Errorf("cname: %v", r)
	}
	want := []netip.Addr{netip.MustParseAddr("198.51.100.20"), netip.MustParseAddr("198.51.100.22"), netip.MustParseAddr("198.51.100.23")}
	if !slices.Equal(w.sbx.allowed["list"], want) {
		t.Errorf("opened %v, want %v", w.sbx.allowed["list"], want)
	}
	// Other record types of allowed names pass; nothing is opened for them.
	if r := w.ask(listBox, "txt.allowed.test", mdns.TypeTXT); len(r.Answer) != 1 {
		t.Errorf("TXT: %v", r)
	}
	// AAAA: no records, for everyone, without asking upstream.
	before = len(w.zone.asked())
	for _, box := range []netip.Addr{openBox, listBox} {
		if r := w.ask(box, "allowed.test", mdns.TypeAAAA); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 {
			t.Errorf("AAAA from %s: %v", box, r)
		}
	}
	if got := w.zone.asked(); len(got) != before {
		t.Errorf("upstream was asked for %v", got[before:])
	}
	if r := w.ask(listBox, "nope.allowed.test", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Errorf("missing allowed name: %v", r)
	}
}

func TestResolveTTLs(t *testing.T) {
	w := newUnitWorld(t, func(c *Config) { c.MinTTL, c.MaxTTL = 30*time.Second, time.Hour })
	r := w.ask(listBox, "short.allowed.test", mdns.TypeA)
	if w.sbx.ttls["list"] != 30*time.Second || r.Answer[0].Header().Ttl != 1 {
		t.Errorf("short TTL: opened for %s, answered TTL %d; want 30s and 1", w.sbx.ttls["list"], r.Answer[0].Header().Ttl)
	}
	r = w.ask(listBox, "long.allowed.test", mdns.TypeA)
	if w.sbx.ttls["list"] != time.Hour || r.Answer[0].Header().Ttl != 3600 {
		t.Errorf("long TTL: opened for %s, answered TTL %d; want 1h and 3600", w.sbx.ttls["list"], r.Answer[0].Header().Ttl)
	}
}

func TestResolveBounds(t *testing.T) {
	w := newUnitWorld(t, func(c *Config) { c.MaxInFlightPerSandbox = 2; c.MaxAddrsPerAnswer = 8 })

	// At most MaxAddrsPerAnswer A records are opened and returned.
	r := w.ask(listBox, "many.allowed.test", mdns.TypeA)
	if len(aRecords(r)) != 8 || len(w.sbx.allowed["list"]) != 8 {
		t.Errorf("many: %d records answered, %d opened; want 8 and 8", len(aRecords(r)), len(w.sbx.allowed["list"]))
	}

	// A query bigger than MaxQuerySize is FORMERR.
	q := new(mdns.Msg)
	q.SetQuestion("allowed.test.", mdns.TypeA)
	for range 60 {
		txt, _ := mdns.NewRR("x.test. 60 IN TXT \"" + string(make([]byte, 200)) + "\"")
		q.Extra = append(q.Extra, txt)
	}
	if r := w.srv.Resolve(context.Background(), openBox, q, false); r.Rcode != mdns.RcodeFormatError {
		t.Errorf("oversized query: %v", r)
	}

	// In flight: two queries that hang upstream fill the sandbox's slots; a
	// third gets SERVFAIL at once, another sandbox is unaffected.
	done := make(chan *mdns.Msg, 2)
	for range 2 {
		go func() { done <- w.ask(openBox, "block.allowed.test", mdns.TypeA) }()
	}
	for len(w.zone.asked()) < 2+1 { // many.allowed.test, then the two
		time.Sleep(5 * time.Millisecond)
	}
	if r := w.ask(openBox, "allowed.test", mdns.TypeA); r.Rcode != mdns.RcodeServerFailure {
		t.Errorf("third query in flight: %v, want SERVFAIL", r)
	}
	if r := w.ask(listBox, "allowed.test", mdns.TypeA); r.Rcode != mdns.RcodeSuccess {
		t.Errorf("other sandbox: %v", r)
	}
	close(w.zone.unblock)
	for range 2 {
		if r := <-done; r.Rcode != mdns.RcodeNameError {
			t.Errorf("blocked query: %v", r)
		}
	}
	if r := w.ask(openBox, "allowed.test", mdns.TypeA); r.Rcode != mdns.RcodeSuccess {
		t.Errorf("after the slots are free: %v", r)
	}

	// A failing firewall update is SERVFAIL, not an answer the sandbox
	// cannot use.
	w.sbx.mu.Lock()
	w.sbx.fail = context.DeadlineExceeded
	w.sbx.mu.Unlock()
	if r := w.ask(listBox, "allowed.test", mdns.TypeA); r.Rcode != mdns.RcodeServerFailure {
		t.Errorf("failed AllowResolved: %v", r)
	}
}

func TestUpstreamTimeoutAndFailover(t *testing.T) {
	// A black hole first (bound, never answers), then the zone.
	hole, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	w := newUnitWorld(t, func(c *Config) {
		c.UpstreamTimeout = time.Second
		c.Upstreams = append([]netip.AddrPort{hole.LocalAddr().(*net.UDPAddr).AddrPort()}, c.Upstreams...)
	})
	if r := w.ask(openBox, "allowed.test", mdns.TypeA); !slices.Equal(aRecords(r), []string{"198.51.100.20"}) {
		t.Errorf("failover: %v", r)
	}
	w.srv.cfg.Upstreams = w.srv.cfg.Upstreams[:1]
	if r := w.ask(openBox, "allowed.test", mdns.TypeA); r.Rcode != mdns.RcodeServerFailure {
		t.Errorf("no upstream answers: %v, want SERVFAIL", r)
	}
}

// TestOverTheWire queries the listening server over UDP and TCP, with a
// client as a sandbox would use, from 127.0.0.1 (a "sandbox" here).
func TestOverTheWire(t *testing.T) {
	w := newUnitWorld(t, nil)
	w.sbx.set(netip.MustParseAddr("127.0.0.1"), fakeBox{"lo", network.Policy{AllowNames: []string{"*.allowed.test"}}})
	udp, tcp := w.srv.Addrs()
	for _, c := range []struct {
		net, addr string
	}{{"udp", udp.String()}, {"tcp", tcp.String()}} {
		cl := &mdns.Client{Net: c.net, Timeout: 2 * time.Second}
		q := new(mdns.Msg)
		q.SetQuestion("www.allowed.test.", mdns.TypeA)
		r, _, err := cl.Exchange(q, c.addr)
		if err != nil || !slices.Equal(aRecords(r), []string{"198.51.100.22"}) || r.Id != q.Id {
			t.Errorf("%s: %v, %v", c.net, r, err)
		}
		q.SetQuestion("other.test.", mdns.TypeA)
		if r, _, err := cl.Exchange(q, c.addr); err != nil || r.Rcode != mdns.RcodeNameError {
			t.Errorf("%s other.test: %v, %v", c.net, r, err)
		}
	}
	// Without EDNS, a UDP answer fits 512 bytes (truncated, TC set).
	cl := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
	w.sbx.set(netip.MustParseAddr("127.0.0.1"), fakeBox{"lo", network.Policy{}})
	q := new(mdns.Msg)
	q.SetQuestion("many.allowed.test.", mdns.TypeA)
	r, _, err := cl.Exchange(q, udp.String())
	if err != nil {
		t.Fatal(err)
	}
	if r.Compress = true; r.Len() > 512 || !r.Truncated {
		t.Errorf("UDP answer without EDNS: %d bytes, truncated %v; want at most 512 and truncated", r.Len(), r.Truncated)
	}
}
