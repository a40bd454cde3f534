package network

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Bounds on a policy, so that one request cannot make the firewall grow
// without limit.
const (
	MaxAllowCIDRs   = 64
	MaxPortsPerRule = 32
	MaxAllowNames   = 64
	MaxPeerGroupLen = 128
	maxNameLen      = 253
)

// Policy is the network policy of one sandbox. The zero Policy is the default:
// egress to the internet allowed; the host, other sandboxes, private ranges,
// link-local and multicast blocked; ingress allowed; DNS to Config.DNS allowed.
type Policy struct {
	// DenyEgress blocks everything leaving the sandbox except DNS to the
	// resolvers in Config.DNS (unless DenyDNS is set too).
	DenyEgress bool `json:"deny_egress,omitempty"`
	// DenyDNS blocks DNS to the resolvers in Config.DNS. Named "deny" so that
	// the zero Policy is the useful default.
	DenyDNS bool `json:"deny_dns,omitempty"`
	// AllowCIDRs restricts egress to these destinations (plus DNS). A rule may
	// open a blocked range (a private network, link-local) explicitly; it can
	// never open other sandboxes, the bridge address or Config.HostBlock.
	AllowCIDRs []CIDRRule `json:"allow_cidrs,omitempty"`
	// AllowNames restricts egress to these DNS names ("example.com", or
	// "*.example.com" for any name strictly below example.com), in union
	// with AllowCIDRs. sbx's resolver (internal/dns) answers only these
	// names and opens, on every port, the IPv4 addresses it returned, until
	// their TTL runs out (Manager.AllowResolved). Setup rejects it unless
	// Config.NameResolver says that resolver runs.
	AllowNames []string `json:"allow_names,omitempty"`
	// DenyIngress rejects new connections to the sandbox from outside the
	// host. Peers of the same PeerGroup can still connect, and so can the
	// host itself (sbx's own port proxy).
	DenyIngress bool `json:"deny_ingress,omitempty"`
	// PeerGroup, when set, lets the sandbox talk to the other sandboxes of the
	// same group (e.g. one session). Sandboxes never reach any other sandbox.
	PeerGroup string `json:"peer_group,omitempty"`
}

// CIDRRule allows egress to a destination prefix, on all ports or only on
// the listed TCP/UDP ports.
type CIDRRule struct {
	// CIDR is an IPv4 prefix ("203.0.113.0/24") or address ("203.0.113.7").
	CIDR string `json:"cidr"`
	// Ports are TCP and UDP destination ports (1-65535); empty means every
	// port and protocol.
	Ports []int `json:"ports,omitempty"`
}

// restricted reports whether egress is limited to an allow-list.
func (p Policy) restricted() bool { return len(p.AllowCIDRs) > 0 || len(p.AllowNames) > 0 }

// Validate checks p and returns an ErrInvalidArgument error that names the
// offending field ("network.allow_cidrs[2].ports[0]") and says how to fix it.
func (p Policy) Validate() error {
	if p.DenyEgress && len(p.AllowCIDRs) > 0 {
		return invalid("network.deny_egress", "deny_egress cannot be combined with allow_cidrs: an allow-list already blocks everything it does not list; drop one of them")
	}
	if p.DenyEgress && len(p.AllowNames) > 0 {
		return invalid("network.deny_egress", "deny_egress cannot be combined with allow_names: an allow-list already blocks everything it does not list; drop one of them")
	}
	if len(p.AllowCIDRs) > MaxAllowCIDRs {
		return invalid("network.allow_cidrs", "%d rules is more than the maximum of %d; merge prefixes", len(p.AllowCIDRs), MaxAllowCIDRs)
	}
	for i, r := range p.AllowCIDRs {
		field := fmt.Sprintf("network.allow_cidrs[%d]", i)
		if _, err := ParseCIDR(field+".cidr", r.CIDR); err != nil {
			return err
		}
		if len(r.Ports) > MaxPortsPerRule {
			return invalid(field+".ports", "%d ports is more than the maximum of %d per rule; split the rule", len(r.Ports), MaxPortsPerRule)
		}
		for j, port := range r.Ports {
			if port < 1 || port > 65535 {
				return invalid(fmt.Sprintf("%s.ports[%d]", field, j), "port %d is out of range; use 1-65535", port)
			}
		}
	}
	if len(p.AllowNames) > MaxAllowNames {
		return invalid("network.allow_names", "%d names is more than the maximum of %d; use a wildcard such as *.example.com", len(p.AllowNames), MaxAllowNames)
	}
	for i, n := range p.AllowNames {
		if err := checkName(n); err != nil {
			return invalid(fmt.Sprintf("network.allow_names[%d]", i), "%q is not a DNS name: %s; use e.g. \"api.example.com\" or \"*.example.com\"", n, err)
		}
	}
	if len(p.PeerGroup) > MaxPeerGroupLen {
		return invalid("network.peer_group", "peer group is %d bytes, more than the maximum of %d", len(p.PeerGroup), MaxPeerGroupLen)
	}
	for _, c := range p.PeerGroup {
		if c < 0x21 || c > 0x7e {
			return invalid("network.peer_group", "peer group %q has a space or non-printable character; use letters, digits and punctuation", p.PeerGroup)
		}
	}
	return nil
}

// ParseCIDR parses an IPv4 prefix or address as a user writes it, with an
// ErrInvalidArgument error naming field when it is malformed. Host bits must
// be zero, so that "10.0.0.1/8" is not silently taken for all of 10/8.
func ParseCIDR(field, s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, invalid(field, "%q is not an IPv4 CIDR or address; use e.g. \"203.0.113.0/24\"", s)
		}
		if !a.Is4() {
			return netip.Prefix{}, invalid(field, "%q is not IPv4; sandboxes have IPv4 networking only", s)
		}
		return netip.PrefixFrom(a, 32), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, invalid(field, "%q is not an IPv4 CIDR; use e.g. \"203.0.113.0/24\"", s)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, invalid(field, "%q is not IPv4; sandboxes have IPv4 networking only", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, invalid(field, "%q has host bits set; did you mean %q?", s, p.Masked().String())
	}
	return p, nil
}

// checkName accepts a lower- or upper-case DNS name, optionally starting with
// the wildcard label "*." (which matches any name below it).
func checkName(n string) error {
	name := strings.TrimSuffix(strings.TrimPrefix(n, "*."), ".")
	if name == "" {
		return fmt.Errorf("it is empty")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("it is longer than %d characters", maxNameLen)
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return fmt.Errorf("it needs at least two labels")
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("label %q must be 1-63 characters", l)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", l)
		}
		for _, c := range l {
			ok := c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
			if !ok {
				return fmt.Errorf("label %q has the character %q (a wildcard is allowed only as the first label)", l, c)
			}
		}
	}
	return nil
}

func invalid(field, format string, args ...any) error {
	return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "%s: %s", field, fmt.Sprintf(format, args...))
}

// rule is a CIDRRule in parsed form.
type rule struct {
	prefix netip.Prefix
	ports  []uint16
}

// rules parses p's allow-list; p must have passed Validate.
func (p Policy) rules() []rule {
	out := make([]rule, 0, len(p.AllowCIDRs))
	for _, r := range p.AllowCIDRs {
		pfx, err := ParseCIDR("", r.CIDR)
		if err != nil {
			continue
		}
		ru := rule{prefix: pfx}
		for _, port := range r.Ports {
			ru.ports = append(ru.ports, uint16(port))
		}
		out = append(out, ru)
	}
	return out
}
