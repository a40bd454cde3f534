package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/sbx-run/sbx/internal/dns"
	"github.com/sbx-run/sbx/internal/network"
	"github.com/sbx-run/sbx/internal/runtime/local"
)

// maxNetworkDNS bounds Config.NetworkDNS.
const maxNetworkDNS = 8

func (c *Config) validateNetwork() error {
	switch c.Network {
	case "none", "bridge":
	case "":
		c.Network = "bridge"
	default:
		return fmt.Errorf("network %q is not supported: use bridge or none", c.Network)
	}
	if c.NetworkSubnet != "" {
		if _, err := netip.ParsePrefix(c.NetworkSubnet); err != nil {
			return fmt.Errorf("network subnet %q is not a CIDR such as 10.203.0.0/16", c.NetworkSubnet)
		}
	}
	if c.NetworkBridge != "" && !linkNameRE.MatchString(c.NetworkBridge) {
		return fmt.Errorf("network bridge %q must be 1-15 letters, digits, '-' or '_'", c.NetworkBridge)
	}
	if c.NetworkBridge != "" {
		// Its overflow bridges (one per ~1020 sandboxes) are named
		// "<bridge>.b<n>": no other server's bridge can be called so (a
		// '.' fails linkNameRE), so the bridge lock covers them too.
		subnet, _ := netip.ParsePrefix(c.NetworkSubnet) // zero: the default
		if !subnet.IsValid() {
			subnet = network.DefaultSubnet
		}
		if limit := network.BridgeNameLimit(subnet); len(c.NetworkBridge) > limit {
			return fmt.Errorf("network bridge %q is too long for subnet %s: sbx adds overflow bridges named \"%s.b<n>\" (one per ~1020 sandboxes) and Linux link names have at most 15 characters; use a --network-bridge of at most %d characters",
				c.NetworkBridge, subnet, c.NetworkBridge, limit)
		}
	}
	if c.NetworkTable != "" && !tableNameRE.MatchString(c.NetworkTable) {
		return fmt.Errorf("network table %q must be 1-32 letters, digits, '-' or '_'", c.NetworkTable)
	}
	if len(c.NetworkDNS) > maxNetworkDNS {
		return fmt.Errorf("%d network DNS servers: at most %d are allowed", len(c.NetworkDNS), maxNetworkDNS)
	}
	for _, d := range c.NetworkDNS {
		if a, err := netip.ParseAddr(d); err != nil || !a.Is4() {
			return fmt.Errorf("network DNS server %q is not an IPv4 address", d)
		}
	}
	if len(c.NetworkDNSUpstream) > dns.MaxUpstreams {
		return fmt.Errorf("%d network DNS upstreams: at most %d are allowed", len(c.NetworkDNSUpstream), dns.MaxUpstreams)
	}
	if len(c.NetworkDNSUpstream) > 0 && len(c.NetworkDNS) > 0 {
		return fmt.Errorf("network DNS upstreams are for sbx's own resolver, which does not run when network DNS servers are set: drop one of networkDNS (config file) and --network-dns-upstream")
	}
	for _, u := range c.NetworkDNSUpstream {
		if _, err := dns.ParseUpstream(u); err != nil {
			return fmt.Errorf("network DNS upstream: %w", err)
		}
	}
	return nil
}

// networkConfig is the network manager's config for this server: its
// state in the run root (a tmpfs of sbx's, see local.OpenRunRoot; under the
// data dir without one), the API port protected.
func (c *Config) networkConfig(runRoot string) (network.Config, error) {
	nc := network.Config{
		Bridge:   c.NetworkBridge,
		Table:    c.NetworkTable,
		StateDir: oldNetworkState(c.DataDir),
	}
	if runRoot != "" {
		nc.StateDir = filepath.Join(runRoot, local.RunRootNetwork)
	}
	if nc.Bridge == "" {
		nc.Bridge = network.DefaultBridge
	}
	if nc.Table == "" {
		nc.Table = network.DefaultTable
	}
	nc.Subnet = network.DefaultSubnet
	if c.NetworkSubnet != "" {
		p, err := netip.ParsePrefix(c.NetworkSubnet)
		if err != nil {
			return nc, fmt.Errorf("network subnet %q: %w", c.NetworkSubnet, err)
		}
		nc.Subnet = p
	}
	if _, port, err := net.SplitHostPort(c.Listen); err == nil {
		if n, err := strconv.Atoi(port); err == nil && n > 0 {
			nc.ProtectedHostPorts = []int{n}
		}
	}
	for _, d := range c.NetworkDNS {
		nc.DNS = append(nc.DNS, netip.MustParseAddr(d))
	}
	if len(c.NetworkDNS) == 0 {
		// sbx's resolver, on the gateway: the only DNS sandboxes get,
		// and what enforces allow_names.
		nc.DNS = []netip.Addr{network.GatewayOf(nc.Subnet)}
		nc.NameResolver = true
	}
	return nc, nil
}

// startResolver starts sbx's DNS resolver on the gateway of m's subnet, or
// returns nil when there is no network or the sandboxes use the resolvers
// of networkDNS (config file).
func (c *Config) startResolver(m *network.Manager, log *slog.Logger) (*dns.Server, error) {
	if m == nil || !m.Config().NameResolver {
		return nil, nil
	}
	var ups []netip.AddrPort
	for _, u := range c.NetworkDNSUpstream {
		up, err := dns.ParseUpstream(u)
		if err != nil {
			return nil, err
		}
		ups = append(ups, up)
	}
	if len(c.NetworkDNSUpstream) == 0 {
		ups = dns.HostUpstreams("/etc/resolv.conf")
	}
	if len(ups) == 0 {
		log.Warn("sandbox DNS: no upstream resolver (none in /etc/resolv.conf and no --network-dns-upstream); sandboxes' queries will fail")
	}
	gw := m.Config().DNS[0]
	s, err := dns.Start(dns.Config{
		Listen:    netip.AddrPortFrom(gw, 53),
		Upstreams: ups,
		Sandboxes: m,
		Logger:    log.With("component", "dns"),
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox DNS resolver (or name resolvers with networkDNS in the config file): %w", err)
	}
	log.Info("sandbox DNS resolver", "listen", netip.AddrPortFrom(gw, 53).String(), "upstreams", fmt.Sprint(ups))
	return s, nil
}

// openNetwork returns the network manager, or nil for --network none, and
// the host-wide lock on its bridge and table, held until release: a second
// server with the same bridge or table fails here at once, naming the flags
// that give it its own.
func (c *Config) openNetwork(runRoot string) (m *network.Manager, release func(), err error) {
	if c.Network != "bridge" {
		return nil, func() {}, nil
	}
	nc, err := c.networkConfig(runRoot)
	if err != nil {
		return nil, nil, err
	}
	if err := moveNetworkState(oldNetworkState(c.DataDir), nc.StateDir); err != nil {
		return nil, nil, fmt.Errorf("move the network state of an earlier sbx into the run root: %w", err)
	}
	lock, err := lockNetwork(networkLockDir, nc.Bridge, nc.Table)
	if err != nil {
		return nil, nil, err
	}
	if err := checkSubnetFree(nc.Subnet, nc.Bridge); err != nil {
		lock.Release()
		return nil, nil, err
	}
	m, err = network.New(nc)
	if err != nil {
		lock.Release()
		return nil, nil, fmt.Errorf("sandbox network (or run with --network none): %w", err)
	}
	return m, lock.Release, nil
}

var (
	linkNameRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,15}$`)
	tableNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
)
