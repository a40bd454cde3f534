package network

import (
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
)

// Defaults of Config.
const (
	DefaultBridge = "sbx0"
	DefaultTable  = "sbx"
)

// DefaultSubnet is the sandboxes' subnet unless Config.Subnet says otherwise.
// It avoids the ranges Docker (172.17/16 and up) and Podman (10.88/16,
// 10.89/16) pick by default.
var DefaultSubnet = netip.MustParsePrefix("10.203.0.0/16")

// blockedByDefault are the destinations a sandbox cannot reach unless an
// allow-list names them: private ranges, shared address space (carrier NAT),
// link-local (cloud metadata services), loopback, "this network",
// multicast and reserved space.
var blockedByDefault = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/3"), // multicast 224/4 and reserved 240/4
}

// Config is the network of all sandboxes on one host.
type Config struct {
	// Bridge is the name of the Linux bridge the sandboxes hang off
	// (default "sbx0"); it holds the sandboxes' gateway address. Beyond
	// the ~1020 sandboxes one bridge takes, overflow bridges named
	// "<Bridge>.b<n>" join it (see bridges.go), so the name must leave room
	// for that suffix within 15 characters (BridgeNameLimit).
	Bridge string
	// Subnet is the private IPv4 subnet the sandboxes get their addresses
	// from (default 10.203.0.0/16); its first address is the gateway.
	Subnet netip.Prefix
	// Table is the name of sbx's nftables tables (family inet and bridge;
	// default "sbx"). Nothing else in nftables is touched.
	Table string
	// HostBlock are destinations no sandbox may reach whatever its policy
	// (e.g. a management network). A rule without ports blocks the whole
	// prefix.
	HostBlock []CIDRRule
	// ProtectedHostPorts are TCP/UDP ports of the host (e.g. the API port of
	// sbx serve) that no allow rule can open on any host address. The host
	// is closed to sandboxes by default anyway; this guards against an
	// allow-list that names a host address.
	ProtectedHostPorts []int
	// DNS are the resolvers sandboxes may query on port 53 even when their
	// egress is denied: normally only the gateway, where sbx's resolver
	// (internal/dns) listens. They may be host addresses.
	DNS []netip.Addr
	// NameResolver says that DNS is sbx's own resolver, which enforces
	// Policy.AllowNames through AllowResolved. Without it nothing could
	// enforce a name allow-list, so Setup rejects policies that have one.
	NameResolver bool
	// StateDir holds one small file per attached sandbox (address, names,
	// policy), so that a restarted server finds its networks again.
	StateDir string
	// Logger gets what the manager does on its own: the source addresses
	// it rewrites sandbox traffic to, as the host's change (uplinks.go).
	// Nil: slog.Default().
	Logger *slog.Logger
}

// withDefaults returns c with its defaults filled in, or an error saying
// which field is wrong.
func (c Config) withDefaults() (Config, error) {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet
	}
	if len(c.Bridge) > 15 || !isLinkName(c.Bridge) {
		return c, fmt.Errorf("network config: bridge %q must be 1-15 letters, digits, '-' or '_'", c.Bridge)
	}
	if len(c.Table) > 32 || !isLinkName(c.Table) {
		return c, fmt.Errorf("network config: table %q must be 1-32 letters, digits, '-' or '_'", c.Table)
	}
	if !c.Subnet.Addr().Is4() || c.Subnet.Bits() < 8 || c.Subnet.Bits() > 28 {
		return c, fmt.Errorf("network config: subnet %s must be IPv4 with a prefix length from /8 to /28", c.Subnet)
	}
	if c.Subnet.Masked() != c.Subnet {
		return c, fmt.Errorf("network config: subnet %s has host bits set; use %s", c.Subnet, c.Subnet.Masked())
	}
	if limit := BridgeNameLimit(c.Subnet); len(c.Bridge) > limit {
		return c, fmt.Errorf("network config: bridge %q is too long for subnet %s: its overflow bridges (one per %d sandboxes) may be named up to %q, over Linux's 15 characters; use a bridge name of at most %d characters",
			c.Bridge, c.Subnet, capacity(c.Subnet, 1), overflowName(c.Bridge, maxOverflow(c.Subnet)), limit)
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return c, fmt.Errorf("network config: state dir %q must be an absolute path", c.StateDir)
	}
	for i, r := range c.HostBlock {
		if _, err := ParseCIDR(fmt.Sprintf("network config: host_block[%d]", i), r.CIDR); err != nil {
			return c, err
		}
		for _, p := range r.Ports {
			if p < 1 || p > 65535 {
				return c, fmt.Errorf("network config: host_block[%d]: port %d is out of range 1-65535", i, p)
			}
		}
	}
	for _, p := range c.ProtectedHostPorts {
		if p < 1 || p > 65535 {
			return c, fmt.Errorf("network config: protected host port %d is out of range 1-65535", p)
		}
	}
	for _, a := range c.DNS {
		if !a.Is4() {
			return c, fmt.Errorf("network config: dns %s must be an IPv4 address", a)
		}
	}
	return c, nil
}

// gateway is the bridge's address: the subnet's first host address.
func (c Config) gateway() netip.Addr { return GatewayOf(c.Subnet) }

// GatewayOf returns the gateway address of a sandbox subnet (its first host
// address, held by the bridge), or that of DefaultSubnet when subnet is the
// zero Prefix: where sbx's resolver listens.
func GatewayOf(subnet netip.Prefix) netip.Addr {
	if !subnet.IsValid() {
		subnet = DefaultSubnet
	}
	return subnet.Masked().Addr().Next()
}

func isLinkName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}
