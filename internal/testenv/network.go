package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/network/nldump"
)

// Network is the host network of one test server: a bridge, nftables
// tables and a subnet no other server on this host uses.
type Network struct {
	// Bridge and Table are "sbxt" and 6 random hex digits (the same for
	// both, so a leak is easy to attribute).
	Bridge, Table string
	// Subnet is a random 10.x.y.0/21 that no address or route of this
	// host overlaps when it is picked.
	Subnet netip.Prefix
}

// Args returns the `sbx serve` flags that select n.
func (n Network) Args() []string {
	return []string{"--network", "bridge", "--network-bridge", n.Bridge,
		"--network-table", n.Table, "--network-subnet", n.Subnet.String(),
		// sbx's sandbox resolver would forward to the host's nameservers:
		// point it at a closed loopback port instead, so that a test
		// sandbox's lookup fails here rather than leave the machine.
		"--network-dns-upstream", TestDNSUpstream}
}

// TestDNSUpstream is the upstream resolver test servers forward sandbox DNS
// to: a loopback port nothing listens on (tests that need names run a zone
// of their own and pass it instead).
const TestDNSUpstream = "127.0.0.1:1"

// NewNetwork picks a unique bridge, table and subnet for one test server.
// When the test ends (after the server, whose cleanup was registered later,
// stopped) it deletes the bridge and the tables in the root network
// namespace, and the server's lock files: a clean `sbx serve` shutdown
// leaves them for its restart, so nothing else would.
func NewNetwork(t testing.TB) Network {
	t.Helper()
	n, err := PickNetwork()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Remove(); err != nil {
			t.Error(err)
		}
	})
	return n
}

// NetworkArgs is NewNetwork(t).Args(): the flags giving a test server its
// own bridge, table and subnet.
func NetworkArgs(t testing.TB) []string {
	t.Helper()
	return NewNetwork(t).Args()
}

// PickNetwork picks a unique bridge, table and subnet (for harnesses
// outside tests; the caller calls Remove once the server stopped).
func PickNetwork() (Network, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Network{}, err
	}
	name := "sbxt" + hex.EncodeToString(b[:])
	subnet, err := freeSubnet()
	if err != nil {
		return Network{}, err
	}
	return Network{Bridge: name, Table: name, Subnet: subnet}, nil
}

// Remove deletes n's bridge, its overflow bridges and their trunks and
// both nftables tables from the current network namespace, if they exist,
// and the lock files sbx serve keeps for them under /run/sbx.
func (n Network) Remove() error {
	var errs []error
	links, err := nldump.Retry(netlink.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	// Overflow bridges and trunks are named "<bridge>.<kind><n>"
	// (internal/network/bridges.go); no bridge name has a '.'. Trunks
	// (veths) first: deleting a bridge leaves its ports in place.
	var del []netlink.Link
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, n.Bridge+".") && l.Type() == "veth" {
			del = append(del, l)
		}
	}
	for _, l := range links {
		name := l.Attrs().Name
		if name == n.Bridge || strings.HasPrefix(name, n.Bridge+".") && l.Type() != "veth" {
			del = append(del, l)
		}
	}
	for _, l := range del {
		// A trunk's peer goes with it: not found is fine.
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove test link %s: %w", l.Attrs().Name, err))
		}
	}
	c, err := nftables.New()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("nftables: %w", err))...)
	}
	tables, err := c.ListTables()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list nftables tables: %w", err))...)
	}
	for _, tb := range tables {
		if tb.Name == n.Table && (tb.Family == nftables.TableFamilyINet || tb.Family == nftables.TableFamilyBridge) {
			c.DelTable(tb)
		}
	}
	if err := c.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("remove test nftables tables %s: %w", n.Table, err))
	}
	for _, f := range []string{"bridge-" + n.Bridge + ".lock", "table-" + n.Table + ".lock"} {
		os.Remove(filepath.Join("/run/sbx", f))
	}
	return errors.Join(errs...)
}

// freeSubnet returns a random 10.x.y.0/21 (x in 64..191, away from the
// ranges Docker, Podman and sbx pick by default) that overlaps no address
// or route of this network namespace.
func freeSubnet() (netip.Prefix, error) {
	var used []netip.Prefix
	addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return netip.Prefix{}, err
	}
	for _, a := range addrs {
		if p, ok := prefix(a.IPNet); ok {
			used = append(used, p)
		}
	}
	routes, err := nldump.Retry(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return netip.Prefix{}, err
	}
	for _, r := range routes {
		if p, ok := prefix(r.Dst); ok && p.Bits() > 0 {
			used = append(used, p)
		}
	}
	for range 1000 {
		// A /21: room for 2045 sandboxes, more than one bridge takes
		// (1023), so a server's size is never limited by its test subnet.
		x, _ := rand.Int(rand.Reader, big.NewInt(128))
		y, _ := rand.Int(rand.Reader, big.NewInt(32))
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(64 + x.Int64()), byte(8 * y.Int64()), 0}), 21)
		free := true
		for _, u := range used {
			if u.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p, nil
		}
	}
	return netip.Prefix{}, errors.New("no free 10.x.y.0/21 subnet for a test server")
}

func prefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits).Masked(), true
}

// String describes n for logs.
func (n Network) String() string {
	return fmt.Sprintf("bridge %s, table %s, subnet %s", n.Bridge, n.Table, n.Subnet)
}
