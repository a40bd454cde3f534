package network

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestValidateNamesTheField(t *testing.T) {
	many := make([]CIDRRule, MaxAllowCIDRs+1)
	for i := range many {
		many[i] = CIDRRule{CIDR: "203.0.113.0/24"}
	}
	for _, tc := range []struct {
		name  string
		p     Policy
		field string
	}{
		{"malformed cidr", Policy{AllowCIDRs: []CIDRRule{{CIDR: "203.0.113.0/24"}, {CIDR: "10.0.0.0/33"}}}, "network.allow_cidrs[1].cidr"},
		{"not an address", Policy{AllowCIDRs: []CIDRRule{{CIDR: "example.com"}}}, "network.allow_cidrs[0].cidr"},
		{"host bits", Policy{AllowCIDRs: []CIDRRule{{CIDR: "10.0.0.1/8"}}}, `did you mean "10.0.0.0/8"`},
		{"ipv6", Policy{AllowCIDRs: []CIDRRule{{CIDR: "2001:db8::/32"}}}, "network.allow_cidrs[0].cidr"},
		{"port zero", Policy{AllowCIDRs: []CIDRRule{{CIDR: "1.2.3.4", Ports: []int{443, 0}}}}, "network.allow_cidrs[0].ports[1]"},
		{"port too big", Policy{AllowCIDRs: []CIDRRule{{CIDR: "1.2.3.4", Ports: []int{65536}}}}, "network.allow_cidrs[0].ports[0]"},
		{"too many rules", Policy{AllowCIDRs: many}, "network.allow_cidrs:"},
		{"deny_egress with cidrs", Policy{DenyEgress: true, AllowCIDRs: []CIDRRule{{CIDR: "1.2.3.4"}}}, "network.deny_egress"},
		{"deny_egress with names", Policy{DenyEgress: true, AllowNames: []string{"example.com"}}, "network.deny_egress"},
		{"bad name", Policy{AllowNames: []string{"example.com", "exa mple.com"}}, "network.allow_names[1]"},
		{"wildcard in the middle", Policy{AllowNames: []string{"api.*.example.com"}}, "network.allow_names[0]"},
		{"single label", Policy{AllowNames: []string{"localhost"}}, "network.allow_names[0]"},
		{"long label", Policy{AllowNames: []string{strings.Repeat("a", 64) + ".com"}}, "network.allow_names[0]"},
		{"peer group space", Policy{PeerGroup: "a b"}, "network.peer_group"},
		{"peer group long", Policy{PeerGroup: strings.Repeat("g", MaxPeerGroupLen+1)}, "network.peer_group"},
	} {
		err := tc.p.Validate()
		if err == nil {
			t.Errorf("%s: Validate accepted %+v", tc.name, tc.p)
			continue
		}
		if !errors.Is(err, sandbox.ErrInvalidArgument) || sandbox.ReasonOf(err) != sandbox.ReasonInvalidSpec {
			t.Errorf("%s: error kind %v reason %q", tc.name, sandbox.KindOf(err), sandbox.ReasonOf(err))
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %q does not mention %q", tc.name, err, tc.field)
		}
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, p := range []Policy{
		{},
		{DenyEgress: true, DenyDNS: true, DenyIngress: true},
		{AllowCIDRs: []CIDRRule{{CIDR: "0.0.0.0/0", Ports: []int{443}}, {CIDR: "169.254.169.254"}}},
		{AllowNames: []string{"example.com", "*.example.com", "API.Example.org."}},
		{PeerGroup: "session-0123:x"},
	} {
		if err := p.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", p, err)
		}
	}
}

func TestIPAM(t *testing.T) {
	p := newIPAM(netip.MustParsePrefix("10.1.0.0/29")) // .1 gateway, .7 broadcast: .2-.6
	var got []string
	for range 5 {
		a, ok := p.allocate()
		if !ok {
			t.Fatal("subnet full too early")
		}
		got = append(got, a.String())
	}
	if strings.Join(got, " ") != "10.1.0.2 10.1.0.3 10.1.0.4 10.1.0.5 10.1.0.6" {
		t.Fatalf("allocated %v", got)
	}
	if _, ok := p.allocate(); ok {
		t.Fatal("allocated from a full subnet")
	}
	p.release(netip.MustParseAddr("10.1.0.3"))
	if a, _ := p.allocate(); a.String() != "10.1.0.3" {
		t.Fatalf("reallocated %s, want the freed 10.1.0.3", a)
	}
}

func TestConfigDefaultsAndErrors(t *testing.T) {
	c, err := Config{StateDir: "/var/lib/sbx/network"}.withDefaults()
	if err != nil || c.Bridge != "sbx0" || c.Table != "sbx" || c.Subnet != DefaultSubnet {
		t.Fatalf("defaults = %+v, %v", c, err)
	}
	for _, bad := range []Config{
		{},
		{StateDir: "relative"},
		{StateDir: "/x", Bridge: "a-bridge-name-too-long"},
		{StateDir: "/x", Subnet: netip.MustParsePrefix("10.0.0.0/30")},
		{StateDir: "/x", Subnet: netip.MustParsePrefix("10.0.0.1/16")},
		{StateDir: "/x", HostBlock: []CIDRRule{{CIDR: "x"}}},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("withDefaults(%+v) accepted", bad)
		}
	}
}
