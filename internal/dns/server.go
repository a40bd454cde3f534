package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// Server is a running resolver.
type Server struct {
	cfg      Config
	udp, tcp *mdns.Server
	udpAddr  net.Addr
	tcpAddr  net.Addr

	mu       sync.Mutex
	inFlight int
	perBox   map[string]int // sandbox id -> queries in flight
	lastWarn time.Time
	dropped  int // warnings left out since lastWarn
}

// warn logs at most one line a second, so that a sandbox that floods the
// resolver with failing queries cannot flood the server's log too.
func (s *Server) warn(msg string, args ...any) {
	s.mu.Lock()
	now := time.Now()
	if now.Sub(s.lastWarn) < time.Second {
		s.dropped++
		s.mu.Unlock()
		return
	}
	dropped := s.dropped
	s.lastWarn, s.dropped = now, 0
	s.mu.Unlock()
	if dropped > 0 {
		args = append(args, "similar_warnings_dropped", dropped)
	}
	s.cfg.Logger.Warn(msg, args...)
}

// Start listens on cfg.Listen (UDP and TCP) and serves until Close. It
// fails at once when the address cannot be bound (another DNS server on
// the gateway address or on 0.0.0.0:53).
func Start(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, perBox: map[string]int{}}
	addr := cfg.Listen.String()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("dns resolver: listen on udp %s (is another DNS server bound to port 53 of every address?): %w", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("dns resolver: listen on tcp %s: %w", addr, err)
	}
	s.udpAddr, s.tcpAddr = pc.LocalAddr(), ln.Addr()
	h := mdns.HandlerFunc(s.serveDNS)
	s.udp = &mdns.Server{PacketConn: pc, Handler: h, UDPSize: MaxQuerySize}
	s.tcp = &mdns.Server{
		Listener:      newLimitListener(ln, cfg.MaxTCPConns),
		Handler:       h,
		ReadTimeout:   5 * time.Second,
		WriteTimeout:  5 * time.Second,
		IdleTimeout:   func() time.Duration { return 10 * time.Second },
		MaxTCPQueries: 128,
	}
	for i, srv := range []*mdns.Server{s.udp, s.tcp} {
		started, failed := make(chan struct{}), make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(started) }
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				failed <- err
				cfg.Logger.Error("dns resolver stopped", "err", err)
			}
		}()
		select {
		case <-started:
		case err := <-failed:
			if i == 1 {
				s.udp.Shutdown()
			} else {
				ln.Close()
			}
			return nil, fmt.Errorf("dns resolver on %s: %w", addr, err)
		}
	}
	return s, nil
}

// Addrs returns the UDP and TCP addresses the resolver listens on.
func (s *Server) Addrs() (udp, tcp net.Addr) { return s.udpAddr, s.tcpAddr }

// Close stops serving; queries being answered get a few seconds to finish.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return errors.Join(s.udp.ShutdownContext(ctx), s.tcp.ShutdownContext(ctx))
}

func (s *Server) serveDNS(w mdns.ResponseWriter, q *mdns.Msg) {
	var src netip.Addr
	udp := false
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		src, udp = a.AddrPort().Addr(), true
	case *net.TCPAddr:
		src = a.AddrPort().Addr()
	}
	// One query takes at most two upstream tries' time; a stub resolver
	// retries after 5 s (glibc's default), so it gets SERVFAIL before that.
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.UpstreamTimeout)
	defer cancel()
	resp := s.Resolve(ctx, src.Unmap(), q, udp)
	if udp {
		resp.Truncate(udpSize(q))
	}
	w.WriteMsg(resp)
}

// udpSize is the largest UDP answer the client takes.
func udpSize(q *mdns.Msg) int {
	if o := q.IsEdns0(); o != nil {
		return max(int(o.UDPSize()), mdns.MinMsgSize)
	}
	return mdns.MinMsgSize
}

// Resolve answers q, a query from the sandbox address src, over UDP or TCP
// as udp says (upstreams are asked over the same transport).
func (s *Server) Resolve(ctx context.Context, src netip.Addr, q *mdns.Msg, udp bool) *mdns.Msg {
	if q.Opcode != mdns.OpcodeQuery {
		return reply(q, mdns.RcodeNotImplemented)
	}
	if len(q.Question) != 1 || q.Len() > MaxQuerySize {
		return reply(q, mdns.RcodeFormatError)
	}
	id, p, ok := s.cfg.Sandboxes.Lookup(src)
	if !ok || p.DenyDNS || q.Question[0].Qclass != mdns.ClassINET {
		return reply(q, mdns.RcodeRefused)
	}
	question := q.Question[0]
	if len(p.AllowNames) > 0 && !Allowed(p.AllowNames, question.Name) {
		r := reply(q, mdns.RcodeNameError)
		if o := r.IsEdns0(); o != nil {
			o.Option = append(o.Option, &mdns.EDNS0_EDE{InfoCode: mdns.ExtendedErrorCodeBlocked, ExtraText: "not in the sandbox's allow_names"})
		}
		return r
	}
	if question.Qtype == mdns.TypeAAAA {
		return reply(q, mdns.RcodeSuccess) // IPv4 only: no records
	}
	if !s.acquire(id) {
		return reply(q, mdns.RcodeServerFailure)
	}
	defer s.release(id)

	resp, err := s.forward(ctx, q, udp)
	if err != nil {
		s.warn("dns: no upstream answered", "sandbox", id, "name", question.Name, "err", err)
		return reply(q, mdns.RcodeServerFailure)
	}
	if len(p.AllowNames) == 0 {
		return resp
	}
	addrs, ttl := s.restrict(resp, question.Name)
	if len(addrs) > 0 {
		if err := s.cfg.Sandboxes.AllowResolved(id, addrs, ttl); err != nil {
			s.warn("dns: cannot open resolved addresses", "sandbox", id, "name", question.Name, "err", err)
			return reply(q, mdns.RcodeServerFailure)
		}
	}
	return resp
}

// reply is an empty answer to q with rcode, echoing q's EDNS record.
func reply(q *mdns.Msg, rcode int) *mdns.Msg {
	r := new(mdns.Msg)
	r.SetRcode(q, rcode)
	r.RecursionAvailable = true
	if o := q.IsEdns0(); o != nil {
		r.SetEdns0(MaxQuerySize, o.Do())
	}
	return r
}

// acquire takes one of the in-flight slots of the server and the sandbox.
func (s *Server) acquire(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inFlight >= s.cfg.MaxInFlight || s.perBox[id] >= s.cfg.MaxInFlightPerSandbox {
		return false
	}
	s.inFlight++
	s.perBox[id]++
	return true
}

func (s *Server) release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight--
	if s.perBox[id]--; s.perBox[id] <= 0 {
		delete(s.perBox, id)
	}
}

// forward asks the upstreams in order until one answers.
func (s *Server) forward(ctx context.Context, q *mdns.Msg, udp bool) (*mdns.Msg, error) {
	out := q.Copy()
	out.Id = mdns.Id()
	// Read whole upstream answers; the client gets one cut to its size.
	c := &mdns.Client{Net: "tcp", Timeout: s.cfg.UpstreamTimeout, UDPSize: mdns.MaxMsgSize}
	if udp {
		c.Net = "udp"
	}
	if len(s.cfg.Upstreams) == 0 {
		return nil, errors.New("no upstream resolver is configured: name one with --network-dns-upstream or in /etc/resolv.conf")
	}
	var errs []error
	for _, up := range s.cfg.Upstreams {
		resp, _, err := c.ExchangeContext(ctx, out, up.String())
		if err == nil {
			resp.Id = q.Id
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// restrict keeps of resp's answer only the records of name's CNAME chain,
// at most MaxAddrsPerAnswer A records and no AAAA, caps their TTLs at
// MaxTTL, drops the authority and additional sections (but the EDNS
// record), and returns the A records' addresses and how long they must stay
// open: the largest TTL, clamped to [MinTTL, MaxTTL].
func (s *Server) restrict(resp *mdns.Msg, name string) ([]netip.Addr, time.Duration) {
	chain := map[string]bool{mdns.CanonicalName(name): true}
	cur := mdns.CanonicalName(name)
	for range maxCNAMEs {
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*mdns.CNAME); ok && mdns.CanonicalName(c.Hdr.Name) == cur {
				next = mdns.CanonicalName(c.Target)
				break
			}
		}
		if next == "" || chain[next] {
			break
		}
		chain[next], cur = true, next
	}
	var kept []mdns.RR
	var addrs []netip.Addr
	var maxTTL uint32
	for _, rr := range resp.Answer {
		h := rr.Header()
		if !chain[mdns.CanonicalName(h.Name)] || h.Rrtype == mdns.TypeAAAA {
			continue
		}
		if a, ok := rr.(*mdns.A); ok {
			ip, ok := netip.AddrFromSlice(a.A)
			if !ok || len(addrs) >= s.cfg.MaxAddrsPerAnswer {
				continue
			}
			addrs = append(addrs, ip.Unmap())
			maxTTL = max(maxTTL, h.Ttl)
		}
		h.Ttl = min(h.Ttl, uint32(s.cfg.MaxTTL/time.Second))
		kept = append(kept, rr)
	}
	resp.Answer, resp.Ns = kept, nil
	var extra []mdns.RR
	if o := resp.IsEdns0(); o != nil {
		extra = []mdns.RR{o}
	}
	resp.Extra = extra
	ttl := min(max(time.Duration(maxTTL)*time.Second, s.cfg.MinTTL), s.cfg.MaxTTL)
	return addrs, ttl
}

// limitListener accepts at most n connections at a time; more wait in the
// kernel's backlog.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, n int) net.Listener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
