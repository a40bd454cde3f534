package daemon

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"

	"github.com/sbx-run/sbx/internal/network"
	"github.com/sbx-run/sbx/internal/runtime/local"
)

// maxNetworkDNS bounds Config.NetworkDNS.
const maxNetworkDNS = 8

func (c *Config) validateNetwork() error {
	switch c.Network {
	case "none", "bridge":
	case "":
		c.Network = "none"
	default:
		return fmt.Errorf("network %q is not supported: use bridge or none", c.Network)
	}
	if c.NetworkSubnet != "" {
		if _, err := netip.ParsePrefix(c.NetworkSubnet); err != nil {
			return fmt.Errorf("network subnet %q is not a CIDR such as 10.203.0.0/16", c.NetworkSubnet)
		}
	}
	if len(c.NetworkDNS) > maxNetworkDNS {
		return fmt.Errorf("%d network DNS servers: at most %d are allowed", len(c.NetworkDNS), maxNetworkDNS)
	}
	for _, d := range c.NetworkDNS {
		if a, err := netip.ParseAddr(d); err != nil || !a.Is4() {
			return fmt.Errorf("network DNS server %q is not an IPv4 address", d)
		}
	}
	return nil
}

// networkConfig is the network manager's config for this server: its
// state under the data dir, the API port protected.
func (c *Config) networkConfig() (network.Config, error) {
	nc := network.Config{
		Bridge:   c.NetworkBridge,
		StateDir: filepath.Join(c.DataDir, "network"),
	}
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
		// Until sbx runs its own resolver: the host's upstream resolvers,
		// opened on port 53 only.
		nc.DNS = local.HostNameservers("/etc/resolv.conf")
	}
	return nc, nil
}

// openNetwork returns the network manager, or nil for --network none.
func (c *Config) openNetwork() (*network.Manager, error) {
	if c.Network != "bridge" {
		return nil, nil
	}
	nc, err := c.networkConfig()
	if err != nil {
		return nil, err
	}
	m, err := network.New(nc)
	if err != nil {
		return nil, fmt.Errorf("sandbox network (or run with --network none): %w", err)
	}
	return m, nil
}
