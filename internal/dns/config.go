package dns

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/sbx-run/sbx/internal/network"
)

// Sandboxes is what the resolver needs of the sandboxes' network;
// *network.Manager implements it.
type Sandboxes interface {
	// Lookup returns the sandbox whose address is addr, and its policy.
	Lookup(addr netip.Addr) (sandboxID string, p network.Policy, ok bool)
	// AllowResolved opens addrs to the sandbox for at least ttl.
	AllowResolved(sandboxID string, addrs []netip.Addr, ttl time.Duration) error
}

// Defaults and bounds of Config.
const (
	DefaultMinTTL                = 30 * time.Second
	DefaultMaxTTL                = time.Hour
	DefaultUpstreamTimeout       = 2 * time.Second
	DefaultMaxInFlight           = 1024
	DefaultMaxInFlightPerSandbox = 32
	DefaultMaxTCPConns           = 256
	DefaultMaxAddrsPerAnswer     = 32
	// MaxQuerySize bounds a query: a question and an EDNS record fit
	// easily; anything larger is answered FORMERR.
	MaxQuerySize = 1232
	// MaxUpstreams bounds Config.Upstreams.
	MaxUpstreams = 8
	// maxCNAMEs bounds the CNAME chain followed in an answer.
	maxCNAMEs = 8
)

// Config is the resolver's configuration. Zero fields take the defaults.
type Config struct {
	// Listen is where it listens, UDP and TCP: the bridge's gateway
	// address, port 53 (the sandboxes' firewall allows DNS only there).
	Listen netip.AddrPort
	// Upstreams are the resolvers queries are forwarded to, in order (the
	// next one is tried when one fails). They are reached from the host,
	// so a loopback resolver such as 127.0.0.53 works. With none, every
	// query that would be forwarded gets SERVFAIL.
	Upstreams []netip.AddrPort
	// Sandboxes tells who asks and opens what the answers name.
	Sandboxes Sandboxes
	// Logger gets one line per failed upstream exchange or firewall
	// update; nil discards.
	Logger *slog.Logger
	// MinTTL and MaxTTL clamp how long an address resolved for a sandbox
	// with AllowNames stays open; answers' TTLs are capped at MaxTTL.
	MinTTL, MaxTTL time.Duration
	// UpstreamTimeout bounds one exchange with one upstream.
	UpstreamTimeout time.Duration
	// MaxInFlight and MaxInFlightPerSandbox bound the queries being
	// answered at once; above them a query gets SERVFAIL at once.
	MaxInFlight, MaxInFlightPerSandbox int
	// MaxTCPConns bounds open TCP connections; more wait to be accepted.
	MaxTCPConns int
	// MaxAddrsPerAnswer bounds the A records of one answer that are opened
	// (and returned) for a sandbox with AllowNames.
	MaxAddrsPerAnswer int
}

func (c Config) withDefaults() (Config, error) {
	if !c.Listen.IsValid() {
		return c, fmt.Errorf("dns resolver: listen address is not set")
	}
	if len(c.Upstreams) > MaxUpstreams {
		return c, fmt.Errorf("dns resolver: %d upstream resolvers is more than the maximum of %d", len(c.Upstreams), MaxUpstreams)
	}
	if c.Sandboxes == nil {
		return c, fmt.Errorf("dns resolver: Sandboxes is not set")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxInFlight, DefaultMaxInFlight)
	def(&c.MaxInFlightPerSandbox, DefaultMaxInFlightPerSandbox)
	def(&c.MaxTCPConns, DefaultMaxTCPConns)
	def(&c.MaxAddrsPerAnswer, DefaultMaxAddrsPerAnswer)
	if c.MinTTL <= 0 {
		c.MinTTL = DefaultMinTTL
	}
	if c.MaxTTL <= 0 {
		c.MaxTTL = DefaultMaxTTL
	}
	if c.UpstreamTimeout <= 0 {
		c.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if c.MinTTL > c.MaxTTL || c.MaxTTL > network.MaxResolvedTTL {
		return c, fmt.Errorf("dns resolver: TTL range %s..%s must be ordered and at most %s", c.MinTTL, c.MaxTTL, network.MaxResolvedTTL)
	}
	return c, nil
}

// ParseUpstream parses an upstream resolver as a user writes it: an IPv4 or
// IPv6 address, with an optional port ("192.0.2.53", "192.0.2.53:5353",
// "[2001:db8::53]:53"); the port defaults to 53.
func ParseUpstream(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("upstream resolver %q is not an IP address or IP:port, e.g. 192.0.2.53 or [2001:db8::53]:53", s)
	}
	return ap, nil
}

// HostUpstreams returns the nameservers of the host's resolv.conf (at most
// three, as the C library uses), port 53. Loopback ones are kept: the
// resolver queries them from the host.
func HostUpstreams(resolvConf string) []netip.AddrPort {
	data, err := os.ReadFile(resolvConf)
	if err != nil || len(data) > 1<<20 {
		return nil
	}
	var out []netip.AddrPort
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() && len(out) < 3 {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if a, err := netip.ParseAddr(f[1]); err == nil && !a.IsUnspecified() {
			out = append(out, netip.AddrPortFrom(a.Unmap(), 53))
		}
	}
	return out
}
