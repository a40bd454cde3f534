package network

import (
	"net/netip"
	"reflect"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The firewall lives in two tables of sbx's own, both named Config.Table:
//
//	inet:   forward: iifname "BR.*" oifname != "BR.*" drop (see below)
//	                 iifname BR jump out; oifname BR jump in
//	        out:     established accept; non-IPv4 drop; HostBlock reject;
//	                 ip saddr @dflt goto e-dflt;
//	                 ip saddr vmap @egress (goto e-<key>); reject
//	        r-<key>: set of the addresses sbx's resolver returned to a
//	                 sandbox with AllowNames (flags timeout); e-<key> accepts them
//	        in:      established accept; non-IPv4 drop;
//	                 ip daddr @dflt goto i-dflt;
//	                 ip daddr vmap @ingress (goto i-<key>); reject
//	        input:   iifname "BR.*" drop; iifname BR jump host; iifname BR reject
//	        host:    established accept; non-IPv4 drop; HostBlock and
//	                 ProtectedHostPorts reject;
//	                 ip saddr @dflt goto h-dflt;
//	                 ip saddr vmap @hostin (goto h-<key>)
//	        output:  ICMP redirects out of BR dropped
//	        post:    snat what leaves the subnet through another link to
//	                 that link's address, from map @uplinks (uplinks.go)
//	        raw:     iifname "BR.*" notrack (see below)
//	bridge: prerouting: IPv4 with iifname . ether saddr . ip saddr in @pins
//	                 accept; ARP with iifname . ether saddr . arp spa and
//	                 iifname . arp sha . arp spa in @pins accept;
//	                 iifname @ports drop
//
// "BR.*" are the overflow bridges (bridges.go). They have no address, but
// what a sandbox sends to one of their own MACs (the bridge's, its ports')
// or to broadcast reaches the host through them (iifname BR.b<n>), where
// the rules keyed on BR would not see it: input and forward drop it (and
// the bridges answer no ARP, see ensureOverflow). The forward rule spares
// bridged frames: when br_netfilter makes the inet hooks see those, their
// iifname and oifname are both the bridge. Such a sandbox packet then
// crosses the inet hooks twice: bridged from its port to the trunk on the
// overflow bridge, then routed from BR. The first pass must not make the
// conntrack entry, or its NAT decision (none: it goes out the trunk) would
// stick and the routed pass would not rewrite it; notrack leaves it to the
// second.
//
// Per sandbox there are three small chains: e- (egress), i- (ingress) and
// h- (to the host itself); and its bridge port is in @ports, with its
// source MAC and IPv4 address pinned in @pins, so that the address-keyed
// rules above cannot be fooled by a sandbox that forges packets. A sandbox
// with the default policy (the zero Policy) has no chains of its own: its
// address is in @dflt, which sends it to e-dflt, i-dflt and h-dflt, the
// zero Policy's chains (see addSandbox for why). A "goto" into a per-sandbox
// chain that falls through returns to the base chain, which then accepts;
// verdicts inside are "return" (allowed), "goto reject" or "accept".
// Everything unknown (an address or port without a map entry) is rejected.
type ruleset struct {
	cfg     Config
	inet    *nftables.Table
	br      *nftables.Table
	egress  *nftables.Set
	ingress *nftables.Set
	hostin  *nftables.Set
	ports   *nftables.Set            // our bridge ports: frames from one that no pin allows are dropped
	pins    *nftables.Set            // port . source MAC . source IPv4 that each port may send
	dflt    *nftables.Set            // addresses of the sandboxes with the default policy
	uplinks *nftables.Set            // output link index -> its address
	groups  map[string]*nftables.Set // by set name
}

const (
	chainReject  = "reject"
	chainBlocked = "blocked"
)

func newRuleset(cfg Config) *ruleset {
	inet := &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet}
	br := &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyBridge}
	vmap := func(t *nftables.Table, name string, kt nftables.SetDatatype) *nftables.Set {
		return &nftables.Set{Table: t, Name: name, IsMap: true, KeyType: kt, DataType: nftables.TypeVerdict}
	}
	return &ruleset{
		cfg:     cfg,
		inet:    inet,
		br:      br,
		egress:  vmap(inet, "egress", nftables.TypeIPAddr),
		ingress: vmap(inet, "ingress", nftables.TypeIPAddr),
		hostin:  vmap(inet, "hostin", nftables.TypeIPAddr),
		ports:   &nftables.Set{Table: br, Name: "ports", KeyType: nftables.TypeIFName},
		pins: &nftables.Set{Table: br, Name: "pins", Concatenation: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr, nftables.TypeIPAddr)},
		dflt:    &nftables.Set{Table: inet, Name: "dflt", KeyType: nftables.TypeIPAddr},
		uplinks: &nftables.Set{Table: inet, Name: uplinksMap, IsMap: true, KeyType: nftables.TypeIFIndex, DataType: nftables.TypeIPAddr},
		groups:  map[string]*nftables.Set{},
	}
}

func (rs *ruleset) rule(c *nftables.Conn, t *nftables.Table, ch *nftables.Chain, exprs ...any) {
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: cat(exprs...)})
}

func (rs *ruleset) chain(c *nftables.Conn, t *nftables.Table, name string) *nftables.Chain {
	return c.AddChain(&nftables.Chain{Name: name, Table: t})
}

func (rs *ruleset) baseChain(c *nftables.Conn, t *nftables.Table, name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
	pol := nftables.ChainPolicyAccept
	return c.AddChain(&nftables.Chain{Name: name, Table: t, Type: typ, Hooknum: hook, Priority: prio, Policy: &pol})
}

// flushTables queues the removal of both tables, whether or not they exist
// (adding an existing table is a no-op, so add-then-delete never fails).
func (rs *ruleset) flushTables(c *nftables.Conn) {
	c.AddTable(rs.inet)
	c.DelTable(rs.inet)
	c.AddTable(rs.br)
	c.DelTable(rs.br)
}

// addBase queues both tables with their base chains, maps and static
// rules; the uplinks map gets the elements of addrs.
func (rs *ruleset) addBase(c *nftables.Conn, addrs map[int]netip.Addr) error {
	cfg, bridge := rs.cfg, rs.cfg.Bridge
	c.AddTable(rs.inet)
	c.AddTable(rs.br)
	for _, s := range []*nftables.Set{rs.egress, rs.ingress, rs.hostin, rs.ports, rs.pins, rs.dflt} {
		s.ID = 0
		if err := c.AddSet(s, nil); err != nil {
			return err
		}
	}
	rs.uplinks.ID = 0
	if err := c.AddSet(rs.uplinks, uplinkElements(addrs)); err != nil {
		return err
	}

	reject := rs.chain(c, rs.inet, chainReject)
	rs.rule(c, rs.inet, reject, l4proto(unix.IPPROTO_TCP), &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
	rs.rule(c, rs.inet, reject, &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED})

	blocked := rs.chain(c, rs.inet, chainBlocked)
	for _, p := range blockedByDefault {
		rs.rule(c, rs.inet, blocked, ipIn(offDaddr, p), goTo(chainReject))
	}

	hostBlock := func(ch *nftables.Chain) error {
		for _, r := range (Policy{AllowCIDRs: cfg.HostBlock}).rules() {
			m, err := ruleMatch(c, rs.inet, offDaddr, r)
			if err != nil {
				return err
			}
			rs.rule(c, rs.inet, ch, m, goTo(chainReject))
		}
		return nil
	}

	// The default policy's chains, shared by every sandbox in @dflt.
	if err := rs.policyChains(c, egressChain(dfltKey), ingressChain(dfltKey), hostChain(dfltKey), Policy{}, nil, nil); err != nil {
		return err
	}

	out := rs.chain(c, rs.inet, "out")
	rs.rule(c, rs.inet, out, ctEstablished(), accept())
	rs.rule(c, rs.inet, out, notIPv4(), drop())
	if err := hostBlock(out); err != nil {
		return err
	}
	rs.rule(c, rs.inet, out, ipInSet(offSaddr, rs.dflt), goTo(egressChain(dfltKey)))
	rs.rule(c, rs.inet, out, ipVmap(offSaddr, rs.egress))
	rs.rule(c, rs.inet, out, goTo(chainReject))

	in := rs.chain(c, rs.inet, "in")
	rs.rule(c, rs.inet, in, ctEstablished(), accept())
	rs.rule(c, rs.inet, in, notIPv4(), drop())
	rs.rule(c, rs.inet, in, ipInSet(offDaddr, rs.dflt), goTo(ingressChain(dfltKey)))
	rs.rule(c, rs.inet, in, ipVmap(offDaddr, rs.ingress))
	rs.rule(c, rs.inet, in, goTo(chainReject))

	host := rs.chain(c, rs.inet, "host")
	rs.rule(c, rs.inet, host, ctEstablished(), accept())
	rs.rule(c, rs.inet, host, notIPv4(), drop())
	if err := hostBlock(host); err != nil {
		return err
	}
	for _, port := range cfg.ProtectedHostPorts {
		for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			rs.rule(c, rs.inet, host, l4proto(proto), dport(uint16(port)), goTo(chainReject))
		}
	}
	rs.rule(c, rs.inet, host, ipInSet(offSaddr, rs.dflt), goTo(hostChain(dfltKey)))
	rs.rule(c, rs.inet, host, ipVmap(offSaddr, rs.hostin))

	overflow := bridge + "." // the prefix of the overflow bridges' names
	fwd := rs.baseChain(c, rs.inet, "forward", nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter)
	rs.rule(c, rs.inet, fwd, namePrefix(expr.MetaKeyIIFNAME, overflow),
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(overflow)}, drop())
	rs.rule(c, rs.inet, fwd, iifIs(bridge), jump("out"))
	rs.rule(c, rs.inet, fwd, oifIs(bridge), jump("in"))

	input := rs.baseChain(c, rs.inet, "input", nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter)
	rs.rule(c, rs.inet, input, namePrefix(expr.MetaKeyIIFNAME, overflow), drop())
	rs.rule(c, rs.inet, input, iifIs(bridge), jump("host"))
	rs.rule(c, rs.inet, input, iifIs(bridge), goTo(chainReject))

	// The host routes sandbox-to-sandbox traffic back out of the bridge it
	// came in on, which makes the kernel send ICMP redirects ("talk to your
	// peer directly"); ports are isolated, so following one would break the
	// connection. Drop them rather than change the host-wide sysctl.
	output := rs.baseChain(c, rs.inet, "output", nftables.ChainTypeFilter, nftables.ChainHookOutput, nftables.ChainPriorityFilter)
	rs.rule(c, rs.inet, output, oifIs(bridge), isIPv4(), l4proto(unix.IPPROTO_ICMP),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{5}}, drop())

	post := rs.baseChain(c, rs.inet, "post", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	rs.uplinkRules(c, post)

	// Bridged frames of the overflow bridges: conntrack and NAT happen
	// when they are routed from the main bridge (see the type's comment).
	raw := rs.baseChain(c, rs.inet, "raw", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, nftables.ChainPriorityRaw)
	rs.rule(c, rs.inet, raw, namePrefix(expr.MetaKeyIIFNAME, overflow), &expr.Notrack{})

	// Only our own ports have entries; frames from any other bridge port
	// (another bridge, another sbx instance) find none and pass untouched.
	// Each port may send IPv4 from its own MAC and address, and ARP for
	// them (sender MAC = source MAC, sender address its own), nothing else:
	// the address-keyed rules above cannot be fooled by forged packets.
	// Plain sets, no verdict map: adding a sandbox adds no "goto", so the
	// commit validates nothing (see addSandbox).
	pre := rs.baseChain(c, rs.br, "prerouting", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, nftables.ChainPriorityFilter)
	rs.rule(c, rs.br, pre, metaEq(expr.MetaKeyPROTOCOL, []byte{0x08, 0x00}),
		rs.pinned(expr.PayloadBaseLLHeader, 6, expr.PayloadBaseNetworkHeader, 12), accept())
	rs.rule(c, rs.br, pre, metaEq(expr.MetaKeyPROTOCOL, []byte{0x08, 0x06}),
		rs.pinned(expr.PayloadBaseLLHeader, 6, expr.PayloadBaseNetworkHeader, 14),
		rs.pinned(expr.PayloadBaseNetworkHeader, 8, expr.PayloadBaseNetworkHeader, 14), accept())
	rs.rule(c, rs.br, pre, &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: rs.ports.Name, SetID: rs.ports.ID}, drop())
	rs.groups = map[string]*nftables.Set{}
	return nil
}

// group returns the set of a peer group's addresses, queueing its creation
// when it is new.
func (rs *ruleset) group(c *nftables.Conn, name string) (*nftables.Set, error) {
	sn := groupSet(name)
	if s, ok := rs.groups[sn]; ok {
		return s, nil
	}
	s := &nftables.Set{Table: rs.inet, Name: sn, KeyType: nftables.TypeIPAddr}
	if err := c.AddSet(s, nil); err != nil {
		return nil, err
	}
	rs.groups[sn] = s
	return s, nil
}

// addSandbox queues the chains, map entries and group membership of a. A
// sandbox with the default policy (the zero Policy, most of them) gets no
// policy chains of its own: its address joins the set @dflt, whose rules
// send it to the shared chains of the default policy. Its create then adds
// no "goto" to the inet table; each such change makes the kernel validate
// the whole table at the commit, every sandbox's map entries and chains
// included (with 1000 sandboxes alive, 9 % of the host's CPU in sustained
// creates).
func (rs *ruleset) addSandbox(c *nftables.Conn, a *Attachment) error {
	if err := rs.addPolicy(c, a); err != nil {
		return err
	}
	return rs.addPort(c, a)
}

// addPolicy queues what a's policy adds: its address in @dflt, or its
// chains, map entries, name set and group membership (keyed by its id).
func (rs *ruleset) addPolicy(c *nftables.Conn, a *Attachment) error {
	k, p := key(a.SandboxID), a.Policy
	if isDefaultPolicy(p) {
		return c.SetAddElements(rs.dflt, []nftables.SetElement{{Key: ip4Key(a.Addr)}})
	}
	var grp *nftables.Set
	if p.PeerGroup != "" {
		var err error
		if grp, err = rs.group(c, p.PeerGroup); err != nil {
			return err
		}
		if err := c.SetAddElements(grp, []nftables.SetElement{{Key: ip4Key(a.Addr)}}); err != nil {
			return err
		}
	}
	// A name allow-list opens what sbx's resolver added to the sandbox's
	// own set (Manager.AllowResolved), every port, until each entry times
	// out. The set starts empty, also after a restart: clients resolve again.
	var resolved *nftables.Set
	if len(p.AllowNames) > 0 {
		resolved = &nftables.Set{Table: rs.inet, Name: resolvedSet(k), KeyType: nftables.TypeIPAddr, HasTimeout: true}
		if err := c.AddSet(resolved, nil); err != nil {
			return err
		}
	}
	if err := rs.policyChains(c, egressChain(k), ingressChain(k), hostChain(k), p, grp, resolved); err != nil {
		return err
	}
	addr := ip4Key(a.Addr)
	for _, e := range []struct {
		set   *nftables.Set
		chain string
	}{{rs.egress, egressChain(k)}, {rs.ingress, ingressChain(k)}, {rs.hostin, hostChain(k)}} {
		el := nftables.SetElement{Key: addr, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.chain}}
		if err := c.SetAddElements(e.set, []nftables.SetElement{el}); err != nil {
			return err
		}
	}
	return nil
}

// isDefaultPolicy says whether p is the zero Policy, whose sandboxes share
// the chains of the default policy. Any field set (one added later
// included) gives a sandbox chains of its own.
func isDefaultPolicy(p Policy) bool { return reflect.ValueOf(p).IsZero() }

// policyChains queues the egress, ingress and host chains of policy p
// under the names given; grp is the set of p's peer group and resolved the
// set of its name allow-list (nil when p has none).
func (rs *ruleset) policyChains(c *nftables.Conn, egress, ingress, hostName string, p Policy, grp, resolved *nftables.Set) error {
	rules, subnet := p.rules(), rs.cfg.Subnet
	dns := func(ch *nftables.Chain, v expr.Any) {
		if p.DenyDNS {
			return
		}
		for _, d := range rs.cfg.DNS {
			for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
				rs.rule(c, rs.inet, ch, ipIn(offDaddr, netip.PrefixFrom(d, 32)), l4proto(proto), dport(53), v)
			}
		}
	}

	eg := rs.chain(c, rs.inet, egress)
	dns(eg, ret())
	if grp != nil {
		rs.rule(c, rs.inet, eg, ipInSet(offDaddr, grp), ret())
	}
	rs.rule(c, rs.inet, eg, ipIn(offDaddr, subnet), goTo(chainReject))
	if p.DenyEgress {
		rs.rule(c, rs.inet, eg, goTo(chainReject))
	}
	for _, r := range rules {
		m, err := ruleMatch(c, rs.inet, offDaddr, r)
		if err != nil {
			return err
		}
		rs.rule(c, rs.inet, eg, m, ret())
	}
	if resolved != nil {
		rs.rule(c, rs.inet, eg, ipInSet(offDaddr, resolved), ret())
	}
	if p.restricted() {
		rs.rule(c, rs.inet, eg, goTo(chainReject))
	}
	rs.rule(c, rs.inet, eg, goTo(chainBlocked))

	in := rs.chain(c, rs.inet, ingress)
	if grp != nil {
		rs.rule(c, rs.inet, in, ipInSet(offSaddr, grp), ret())
	}
	rs.rule(c, rs.inet, in, ipIn(offSaddr, subnet), goTo(chainReject))
	if p.DenyIngress {
		rs.rule(c, rs.inet, in, goTo(chainReject))
	}

	// The host is reachable only for DNS and for allow rules that name it;
	// a catch-all 0.0.0.0/0 rule means "the internet", not the host.
	h := rs.chain(c, rs.inet, hostName)
	dns(h, accept())
	rs.rule(c, rs.inet, h, ipIn(offDaddr, subnet), ret())
	if !p.DenyEgress {
		for _, r := range rules {
			if r.prefix.Bits() == 0 {
				continue
			}
			m, err := ruleMatch(c, rs.inet, offDaddr, r)
			if err != nil {
				return err
			}
			rs.rule(c, rs.inet, h, m, accept())
		}
	}
	return nil
}

// addPort queues a's bridge port and the pin of its MAC and address.
func (rs *ruleset) addPort(c *nftables.Conn, a *Attachment) error {
	if err := c.SetAddElements(rs.pins, []nftables.SetElement{{Key: pinKey(a)}}); err != nil {
		return err
	}
	return c.SetAddElements(rs.ports, []nftables.SetElement{{Key: ifname(a.HostLink)}})
}

// pinned matches when the frame's input port, the MAC at (macBase,
// macOff) and the IPv4 address at (ipBase, ipOff) are one of @pins.
func (rs *ruleset) pinned(macBase expr.PayloadBase, macOff uint32, ipBase expr.PayloadBase, ipOff uint32) []expr.Any {
	// A concatenation sits in consecutive 32-bit registers (8 is the first:
	// NFT_REG32_00): the name in 4, the MAC in 2 (padded), the address in 1.
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 8},
		&expr.Payload{DestRegister: 12, Base: macBase, Offset: macOff, Len: 6},
		&expr.Payload{DestRegister: 14, Base: ipBase, Offset: ipOff, Len: 4},
		&expr.Lookup{SourceRegister: 8, SetName: rs.pins.Name, SetID: rs.pins.ID},
	}
}

// pinKey is a's element of @pins: its port's name, its MAC (padded to 8
// bytes) and its address.
func pinKey(a *Attachment) []byte {
	k := append(ifname(a.HostLink), macFor(a.Addr)...)
	k = append(k, 0, 0)
	return append(k, ip4Key(a.Addr)...)
}

// delSandbox queues the removal of everything addSandbox added. lastInGroup
// says whether a was the last member of its peer group, whose set then goes.
// With portDrop, the bridge port stays in @ports without its pin, so that
// everything it sends is dropped, for a veth pair that outlives its rules
// for a moment (see Manager.Teardown); delPort removes it later.
func (rs *ruleset) delSandbox(c *nftables.Conn, a *Attachment, lastInGroup, portDrop bool) error {
	if err := rs.delPolicy(c, a, lastInGroup); err != nil {
		return err
	}
	// Without its pin the port sends nothing; with portDrop it stays in
	// @ports, so that its frames are dropped until delPort.
	if err := c.SetDeleteElements(rs.pins, []nftables.SetElement{{Key: pinKey(a)}}); err != nil {
		return err
	}
	if portDrop {
		return nil
	}
	return c.SetDeleteElements(rs.ports, []nftables.SetElement{{Key: ifname(a.HostLink)}})
}

// delPolicy queues the removal of what addPolicy added for a.
func (rs *ruleset) delPolicy(c *nftables.Conn, a *Attachment, lastInGroup bool) error {
	k, addr := key(a.SandboxID), ip4Key(a.Addr)
	dflt := isDefaultPolicy(a.Policy)
	sets := []*nftables.Set{rs.dflt}
	if !dflt {
		sets = []*nftables.Set{rs.egress, rs.ingress, rs.hostin}
	}
	for _, set := range sets {
		if err := c.SetDeleteElements(set, []nftables.SetElement{{Key: addr}}); err != nil {
			return err
		}
	}
	if !dflt {
		for _, n := range []string{egressChain(k), ingressChain(k), hostChain(k)} {
			c.DelChain(&nftables.Chain{Name: n, Table: rs.inet})
		}
	}
	if len(a.Policy.AllowNames) > 0 { // after the chain whose rule uses it
		c.DelSet(&nftables.Set{Table: rs.inet, Name: resolvedSet(k)})
	}
	if a.Policy.PeerGroup != "" {
		sn := groupSet(a.Policy.PeerGroup)
		if s, ok := rs.groups[sn]; ok {
			if lastInGroup {
				c.DelSet(s)
				delete(rs.groups, sn)
			} else if err := c.SetDeleteElements(s, []nftables.SetElement{{Key: addr}}); err != nil {
				return err
			}
		}
	}
	return nil
}

// delPort queues the removal of a bridge port's entry.
func (rs *ruleset) delPort(c *nftables.Conn, link string) error {
	return c.SetDeleteElements(rs.ports, []nftables.SetElement{{Key: ifname(link)}})
}
