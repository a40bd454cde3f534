package sbx

import sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"

// Network is a sandbox's network policy, passed as a RunOption or in
// SandboxDefaults. The zero Network is the default: egress to the internet
// allowed; the host, other sandboxes, private ranges (10/8, 172.16/12,
// 192.168/16, 100.64/10), link-local (cloud metadata) and multicast
// blocked. The server rejects bad values with ErrInvalidArgument naming the
// field ("network.allow_cidrs[0].cidr").
type Network struct {
	// DenyEgress blocks all egress but DNS to the resolver sbx provides.
	DenyEgress bool
	// DenyDNS blocks DNS too.
	DenyDNS bool
	// AllowCIDRs allows egress only to these destinations.
	AllowCIDRs []CIDRRule
	// AllowNames allows egress only to these DNS names ("example.com",
	// "*.example.com"), through the resolver sbx runs for its sandboxes: it
	// answers only these names and opens the firewall only for the
	// addresses it returned.
	AllowNames []string
	// DenyIngress rejects new connections from outside the host.
	DenyIngress bool
	// AllowSessionPeers allows traffic with the other sandboxes of the same
	// session that set it too.
	AllowSessionPeers bool
}

// CIDRRule allows egress to an IPv4 prefix ("203.0.113.0/24"), on every
// port or only on Ports.
type CIDRRule struct {
	CIDR  string
	Ports []int
}

func (n Network) applyRun(c *runConfig) { c.network = &n }

func networkToWire(n *Network) *sbxv1.NetworkPolicy {
	if n == nil {
		return nil
	}
	w := &sbxv1.NetworkPolicy{DenyEgress: n.DenyEgress, DenyDns: n.DenyDNS, AllowNames: n.AllowNames,
		DenyIngress: n.DenyIngress, AllowSessionPeers: n.AllowSessionPeers}
	for _, r := range n.AllowCIDRs {
		rule := &sbxv1.CIDRRule{Cidr: r.CIDR}
		for _, p := range r.Ports {
			rule.Ports = append(rule.Ports, int32(p))
		}
		w.AllowCidrs = append(w.AllowCidrs, rule)
	}
	return w
}

func networkFromWire(w *sbxv1.NetworkPolicy) Network {
	n := Network{DenyEgress: w.GetDenyEgress(), DenyDNS: w.GetDenyDns(), AllowNames: w.GetAllowNames(),
		DenyIngress: w.GetDenyIngress(), AllowSessionPeers: w.GetAllowSessionPeers()}
	for _, r := range w.GetAllowCidrs() {
		rule := CIDRRule{CIDR: r.GetCidr()}
		for _, p := range r.GetPorts() {
			rule.Ports = append(rule.Ports, int(p))
		}
		n.AllowCIDRs = append(n.AllowCIDRs, rule)
	}
	return n
}
