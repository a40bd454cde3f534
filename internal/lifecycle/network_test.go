package lifecycle

import (
	"context"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestNetworkPolicyValidatedAndMerged(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for field, p := range map[string]sandbox.NetworkPolicy{
		"network.allow_cidrs[0].cidr":     {AllowCIDRs: []sandbox.CIDRRule{{CIDR: "10.0.0.1/8"}}},
		"network.allow_cidrs[0].ports[1]": {AllowCIDRs: []sandbox.CIDRRule{{CIDR: "203.0.113.0/24", Ports: []int{443, 70000}}}},
		"network.deny_egress":             {DenyEgress: true, AllowCIDRs: []sandbox.CIDRRule{{CIDR: "203.0.113.0/24"}}},
		"network.allow_names[0]":          {AllowNames: []string{"bad name"}},
		"network.allow_session_peers":     {SessionPeers: true},
	} {
		_, err := e.m.Create(ctx, tenant, CreateRequest{Network: &p})
		if sandbox.KindOf(err) != sandbox.ErrInvalidArgument || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: Create: %v, want InvalidArgument naming it", field, err)
		}
	}
	def := &sandbox.NetworkPolicy{DenyEgress: true, SessionPeers: true}
	s, err := e.m.CreateSession(ctx, tenant, sandbox.SessionDefaults{Network: def}, 0)
	if err != nil {
		t.Fatal(err)
	}
	sb := e.create(t, CreateRequest{SessionID: s.ID})
	if n := sb.Spec.Network; !n.DenyEgress || !n.SessionPeers || !strings.HasPrefix(n.PeerGroup, "session-") {
		t.Errorf("effective policy from the session: %+v", n)
	}
	own := &sandbox.NetworkPolicy{DenyIngress: true}
	sb = e.create(t, CreateRequest{SessionID: s.ID, Network: own})
	if n := sb.Spec.Network; n.DenyEgress || !n.DenyIngress || n.PeerGroup != "" {
		t.Errorf("the request's own policy replaces the session's: %+v", n)
	}
	got, err := e.m.Get(ctx, tenant, sb.ID)
	if err != nil || !got.Spec.Network.DenyIngress {
		t.Errorf("stored policy: %+v, %v", got, err)
	}
}

func TestAllowNamesRefusedWithoutResolver(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.NoNameResolver = true })
	ctx := context.Background()
	p := &sandbox.NetworkPolicy{AllowNames: []string{"example.com"}}
	_, err := e.m.Create(ctx, tenant, CreateRequest{Network: p})
	wantErr(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonNameResolverOff)
	_, err = e.m.CreateSession(ctx, tenant, sandbox.SessionDefaults{Network: p}, 0)
	wantErr(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonNameResolverOff)
	// Everything else still works.
	e.create(t, CreateRequest{Network: &sandbox.NetworkPolicy{DenyEgress: true}})
}
