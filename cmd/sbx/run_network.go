package main

import (
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	sbx "github.com/sbx-run/sbx"
)

// maxAllowRules bounds the allow-list flags (the server allows 64 of each).
const maxAllowRules = 128

// netFlags are sbx run's network policy flags.
type netFlags struct {
	denyEgress, denyDNS, denyIngress bool
	allowCIDRs, allowNames           []string
}

func (n *netFlags) add(fl *pflag.FlagSet) {
	fl.BoolVar(&n.denyEgress, "deny-egress", false, "block all egress but DNS")
	fl.BoolVar(&n.denyDNS, "deny-dns", false, "block DNS too")
	fl.BoolVar(&n.denyIngress, "deny-ingress", false, "reject connections from outside the host")
	fl.StringArrayVar(&n.allowCIDRs, "allow-cidr", nil, "allow egress only to CIDR[:PORT,PORT...] (repeatable), e.g. 203.0.113.0/24:443")
	fl.StringArrayVar(&n.allowNames, "allow-name", nil, "allow egress only to this DNS name, exact or *.example.com (repeatable)")
}

// option returns the Network option, or nil when no flag was given; the
// server validates the values and names the bad one.
func (n *netFlags) option() (sbx.RunOption, error) {
	if !n.denyEgress && !n.denyDNS && !n.denyIngress && len(n.allowCIDRs) == 0 && len(n.allowNames) == 0 {
		return nil, nil
	}
	if len(n.allowCIDRs)+len(n.allowNames) > maxAllowRules {
		return nil, usageErrorf("too many --allow-cidr and --allow-name values (%d): at most %d", len(n.allowCIDRs)+len(n.allowNames), maxAllowRules)
	}
	net := sbx.Network{DenyEgress: n.denyEgress, DenyDNS: n.denyDNS, DenyIngress: n.denyIngress, AllowNames: n.allowNames}
	for _, v := range n.allowCIDRs {
		cidr, ports, hasPorts := strings.Cut(v, ":")
		rule := sbx.CIDRRule{CIDR: cidr}
		if hasPorts {
			for _, p := range strings.Split(ports, ",") {
				port, err := strconv.Atoi(p)
				if err != nil || port < 1 || port > 65535 {
					return nil, usageErrorf("--allow-cidr %q: port %q is not a number from 1 to 65535", v, p)
				}
				rule.Ports = append(rule.Ports, port)
			}
		}
		net.AllowCIDRs = append(net.AllowCIDRs, rule)
	}
	return net, nil
}
