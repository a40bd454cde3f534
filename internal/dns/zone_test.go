package dns

import (
	"net"
	"strconv"
	"sync"
	"testing"

	mdns "github.com/miekg/dns"
)

// testZone is the authoritative data of the tests' "upstream" server.
var testZone = func() []string {
	z := []string{
		"allowed.test. 60 IN A 198.51.100.20",
		"allowed.test. 60 IN AAAA 2001:db8::20",
		"www.allowed.test. 60 IN A 198.51.100.22",
		"cname.allowed.test. 60 IN CNAME target.other.test.",
		"target.other.test. 60 IN A 198.51.100.23",
		"meta.allowed.test. 60 IN A 169.254.169.254",
		"private.allowed.test. 60 IN A 10.99.0.10",
		"short.allowed.test. 1 IN A 198.51.100.24",
		"long.allowed.test. 86400 IN A 198.51.100.25",
		"other.test. 60 IN A 198.51.100.21",
		"www.other.test. 60 IN A 198.51.100.21",
		"txt.allowed.test. 60 IN TXT \"hello\"",
	}
	for i := range 40 {
		z = append(z, "many.allowed.test. 60 IN A 198.51.100."+strconv.Itoa(100+i))
	}
	return z
}()

// zoneServer is an authoritative DNS server for testZone. Queries for
// "block.allowed.test" wait until unblock is closed.
type zoneServer struct {
	records map[string][]mdns.RR
	unblock chan struct{}
	mu      sync.Mutex
	queries []string // names asked, in order
}

func newZone(t testing.TB) *zoneServer {
	z := &zoneServer{records: map[string][]mdns.RR{}, unblock: make(chan struct{})}
	for _, line := range testZone {
		rr, err := mdns.NewRR(line)
		if err != nil {
			t.Fatalf("zone line %q: %v", line, err)
		}
		n := mdns.CanonicalName(rr.Header().Name)
		z.records[n] = append(z.records[n], rr)
	}
	return z
}

func (z *zoneServer) asked() []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	return append([]string(nil), z.queries...)
}

func (z *zoneServer) ServeDNS(w mdns.ResponseWriter, q *mdns.Msg) {
	name := mdns.CanonicalName(q.Question[0].Name)
	z.mu.Lock()
	z.queries = append(z.queries, name)
	z.mu.Unlock()
	if name == "block.allowed.test." {
		<-z.unblock
	}
	r := new(mdns.Msg)
	r.SetReply(q)
	r.Authoritative = true
	qt := q.Question[0].Qtype
	for cur, n := name, 0; n < 10; n++ {
		rrs, ok := z.records[cur]
		if !ok {
			if cur == name {
				r.Rcode = mdns.RcodeNameError
			}
			break
		}
		next := ""
		for _, rr := range rrs {
			switch {
			case rr.Header().Rrtype == qt:
				r.Answer = append(r.Answer, rr)
			case rr.Header().Rrtype == mdns.TypeCNAME:
				r.Answer = append(r.Answer, rr)
				next = mdns.CanonicalName(rr.(*mdns.CNAME).Target)
			}
		}
		if next == "" {
			break
		}
		cur = next
	}
	// Additional records a resolver must not pass on to an allow-listed sandbox.
	if a, err := mdns.NewRR("glue.other.test. 60 IN A 198.51.100.99"); err == nil {
		r.Extra = append(r.Extra, a)
	}
	size := mdns.MinMsgSize
	if o := q.IsEdns0(); o != nil {
		r.SetEdns0(o.UDPSize(), false)
		size = max(size, int(o.UDPSize()))
	}
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		r.Truncate(size)
	}
	w.WriteMsg(r)
}

// serveZone serves z on UDP and TCP at addr ("127.0.0.1:0") and returns
// the address.
func serveZone(t testing.TB, z *zoneServer, pc net.PacketConn, ln net.Listener) {
	t.Helper()
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: z}, {Listener: ln, Handler: z}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
}
