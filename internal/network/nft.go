package network

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Small builders for nftables expressions. Each returns the expressions of
// one match; a rule is matches followed by a verdict.

func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func metaEq(key expr.MetaKey, data []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data},
	}
}

func iifIs(name string) []expr.Any { return metaEq(expr.MetaKeyIIFNAME, ifname(name)) }
func oifIs(name string) []expr.Any { return metaEq(expr.MetaKeyOIFNAME, ifname(name)) }

// namePrefix matches an interface name (meta key) that starts with
// prefix, as nft's "name*" does: the comparison covers only its bytes.
func namePrefix(key expr.MetaKey, prefix string) []expr.Any {
	return metaEq(key, []byte(prefix))
}

func oifIsNot(name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(name)},
	}
}

func notIPv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

func isIPv4() []expr.Any { return metaEq(expr.MetaKeyNFPROTO, []byte{unix.NFPROTO_IPV4}) }

func l4proto(p byte) []expr.Any { return metaEq(expr.MetaKeyL4PROTO, []byte{p}) }

// IPv4 header offsets.
const (
	offSaddr = 12
	offDaddr = 16
)

func ipField(off uint32) *expr.Payload {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4}
}

// ipIn matches the IPv4 source or destination (off) against a prefix.
func ipIn(off uint32, p netip.Prefix) []expr.Any {
	addr := p.Masked().Addr().As4()
	if p.Bits() == 32 {
		return []expr.Any{ipField(off), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr[:]}}
	}
	mask := net.CIDRMask(p.Bits(), 32)
	return []expr.Any{
		ipField(off),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr[:]},
	}
}

func ipInSet(off uint32, s *nftables.Set) []expr.Any {
	return []expr.Any{ipField(off), &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID}}
}

func ipVmap(off uint32, s *nftables.Set) []expr.Any {
	return []expr.Any{ipField(off), &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, DestRegister: 0, IsDestRegSet: true}}
}

func dport(port uint16) []expr.Any {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, port)
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

func ctEstablished() []expr.Any {
	mask := make([]byte, 4)
	binary.NativeEndian.PutUint32(mask, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func verdict(k expr.VerdictKind) expr.Any { return &expr.Verdict{Kind: k} }

func jump(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }
func goTo(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain} }

func accept() expr.Any { return verdict(expr.VerdictAccept) }
func drop() expr.Any   { return verdict(expr.VerdictDrop) }
func ret() expr.Any    { return verdict(expr.VerdictReturn) }

// cat joins matches and a verdict into a rule's expressions.
func cat(parts ...any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		switch v := p.(type) {
		case []expr.Any:
			out = append(out, v...)
		case expr.Any:
			out = append(out, v)
		}
	}
	return out
}

// ruleMatch returns the match of an allow or block rule: the prefix, and
// when the rule has ports, "meta l4proto { tcp, udp } th dport { ports }"
// through two anonymous sets, so that a rule stays one rule however many
// ports it lists.
func ruleMatch(c *nftables.Conn, t *nftables.Table, off uint32, r rule) ([]expr.Any, error) {
	if len(r.ports) == 0 {
		return ipIn(off, r.prefix), nil
	}
	protos := &nftables.Set{Table: t, Anonymous: true, Constant: true, KeyType: nftables.TypeInetProto}
	if err := c.AddSet(protos, []nftables.SetElement{{Key: []byte{unix.IPPROTO_TCP}}, {Key: []byte{unix.IPPROTO_UDP}}}); err != nil {
		return nil, err
	}
	ports := &nftables.Set{Table: t, Anonymous: true, Constant: true, KeyType: nftables.TypeInetService}
	var els []nftables.SetElement
	seen := map[uint16]bool{}
	for _, p := range r.ports {
		if !seen[p] {
			seen[p] = true
			els = append(els, nftables.SetElement{Key: binary.BigEndian.AppendUint16(nil, p)})
		}
	}
	if err := c.AddSet(ports, els); err != nil {
		return nil, err
	}
	return cat(ipIn(off, r.prefix),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: protos.Name, SetID: protos.ID},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: ports.Name, SetID: ports.ID},
	), nil
}

// ip4Key is an IPv4 address as a set key.
func ip4Key(a netip.Addr) []byte {
	b := a.As4()
	return b[:]
}

// metaOIF loads the output link's index into register 1.
func metaOIF() expr.Any { return &expr.Meta{Key: expr.MetaKeyOIF, Register: 1} }

// lookupInto looks register 1 up in map s and puts the value found in
// register 1; no element, no match.
func lookupInto(s *nftables.Set) expr.Any {
	return &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, DestRegister: 1, IsDestRegSet: true}
}

// snatTo rewrites the IPv4 source address to register 1's.
func snatTo() expr.Any {
	return &expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1}
}

// reg1Uint32 loads v, in host byte order (as meta oif is), into register 1.
func reg1Uint32(v uint32) expr.Any {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return &expr.Immediate{Register: 1, Data: b}
}
