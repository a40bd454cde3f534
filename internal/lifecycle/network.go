package lifecycle

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/sbx-run/sbx/internal/network"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// effectiveNetwork is the policy a sandbox gets: the request's, else the
// session's default (the whole policy, not merged field by field), else the
// default policy. SessionPeers becomes a peer group private to the session.
func effectiveNetwork(req *CreateRequest, tenantID string, d *sandbox.NetworkPolicy) sandbox.NetworkPolicy {
	var p sandbox.NetworkPolicy
	switch {
	case req.Network != nil:
		p = *req.Network
	case d != nil:
		p = *d
	}
	p.PeerGroup = ""
	if p.SessionPeers && req.SessionID != "" {
		sum := sha256.Sum256([]byte(tenantID + "\x00" + req.SessionID))
		p.PeerGroup = "session-" + hex.EncodeToString(sum[:12])
	}
	return p
}

// ValidateNetwork checks a network policy from a user; its error names the
// offending field ("network.allow_cidrs[0].cidr").
func ValidateNetwork(p sandbox.NetworkPolicy, sessionID string) error {
	if p.SessionPeers && sessionID == "" {
		return invalid("network.allow_session_peers: sandbox-to-sandbox traffic is allowed only within a session; create the sandbox in a session or drop the option")
	}
	np := network.Policy{
		DenyEgress: p.DenyEgress, DenyDNS: p.DenyDNS, AllowNames: p.AllowNames,
		DenyIngress: p.DenyIngress, PeerGroup: p.PeerGroup,
	}
	for _, r := range p.AllowCIDRs {
		np.AllowCIDRs = append(np.AllowCIDRs, network.CIDRRule{CIDR: r.CIDR, Ports: r.Ports})
	}
	return np.Validate()
}

// checkNameResolver refuses a name allow-list when this server cannot
// enforce one (Config.NoNameResolver).
func (m *Manager) checkNameResolver(p sandbox.NetworkPolicy) error {
	if m.cfg.NoNameResolver && len(p.AllowNames) > 0 {
		return sandbox.FailedPrecondition(sandbox.ReasonNameResolverOff,
			"network.allow_names: this server does not run sbx's DNS resolver (its config sets networkDNS), so nothing can enforce a name allow-list; use allow_cidrs, or ask the operator to drop networkDNS")
	}
	return nil
}
