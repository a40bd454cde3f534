package server

import (
	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// networkFromWire converts a request's network policy; nil stays nil (the
// session's default, else the default policy). Bounds are checked by
// lifecycle's validation, which names the field.
func networkFromWire(n *sbxv1.NetworkPolicy) *sandbox.NetworkPolicy {
	if n == nil {
		return nil
	}
	p := &sandbox.NetworkPolicy{
		DenyEgress:   n.GetDenyEgress(),
		DenyDNS:      n.GetDenyDns(),
		AllowNames:   n.GetAllowNames(),
		DenyIngress:  n.GetDenyIngress(),
		SessionPeers: n.GetAllowSessionPeers(),
	}
	for _, r := range n.GetAllowCidrs() {
		rule := sandbox.CIDRRule{CIDR: r.GetCidr()}
		for _, port := range r.GetPorts() {
			rule.Ports = append(rule.Ports, int(port))
		}
		p.AllowCIDRs = append(p.AllowCIDRs, rule)
	}
	return p
}

// networkToWire reports a policy; the server-made peer group stays inside.
func networkToWire(p *sandbox.NetworkPolicy) *sbxv1.NetworkPolicy {
	if p == nil {
		return nil
	}
	w := &sbxv1.NetworkPolicy{
		DenyEgress:        p.DenyEgress,
		DenyDns:           p.DenyDNS,
		AllowNames:        p.AllowNames,
		DenyIngress:       p.DenyIngress,
		AllowSessionPeers: p.SessionPeers,
	}
	for _, r := range p.AllowCIDRs {
		rule := &sbxv1.CIDRRule{Cidr: r.CIDR}
		for _, port := range r.Ports {
			rule.Ports = append(rule.Ports, int32(port))
		}
		w.AllowCidrs = append(w.AllowCidrs, rule)
	}
	return w
}
