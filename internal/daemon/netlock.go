package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/network/nldump"
)

// networkLockDir holds one lock file per bridge and per nftables table in
// use by an sbx serve on this host. /run is a tmpfs: a reboot, which also
// removes bridges and tables, clears it.
const networkLockDir = "/run/sbx"

// networkFlagsHint is the advice of every "this network is taken" error.
const networkFlagsHint = "give this server its own network with --network-bridge, --network-subnet and --network-table, or run it with --network none"

// networkLock is the host-wide claim of one server on its bridge and its
// nftables table: two servers sharing either would delete each other's
// rules (each replaces its table at start) and hand out the same addresses.
type networkLock struct {
	files []*os.File
}

// lockNetwork takes the locks of bridge and table (flock, never waiting),
// or says which server holds them and which flags to pass instead. The
// locks are released by Release or when the process ends, however it ends.
func lockNetwork(dir, bridge, table string) (*networkLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create the network lock dir %s: %w", dir, err)
	}
	l := &networkLock{}
	for _, n := range []struct{ kind, name string }{{"bridge", bridge}, {"table", table}} {
		f, err := lockFile(filepath.Join(dir, n.kind+"-"+n.name+".lock"))
		if errors.Is(err, unix.EWOULDBLOCK) {
			l.Release()
			return nil, fmt.Errorf("network %s %q is in use by another sbx serve on this host%s: %s",
				n.kind, n.name, holder(filepath.Join(dir, n.kind+"-"+n.name+".lock")), networkFlagsHint)
		}
		if err != nil {
			l.Release()
			return nil, fmt.Errorf("lock network %s %q: %w", n.kind, n.name, err)
		}
		l.files = append(l.files, f)
	}
	return l, nil
}

// lockFile opens path and takes an exclusive flock on it without waiting,
// then writes our pid into it for the error message of the next taker.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// holder describes the process named in a lock file, if it still runs.
func holder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) > 32 {
		return ""
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return ""
	}
	if err := unix.Kill(pid, 0); err != nil {
		return ""
	}
	return fmt.Sprintf(" (pid %d)", pid)
}

// Release drops the locks; the files stay for the next server.
func (l *networkLock) Release() {
	if l == nil {
		return
	}
	for _, f := range l.files {
		f.Close()
	}
	l.files = nil
}

// checkSubnetFree rejects a sandbox subnet that overlaps an address or a
// route this host already has (its LAN, a VPN, Docker's or another sbx
// server's bridge), other than those of our own bridge (a restart finds
// them) and the default route: the sandboxes would shadow that network or
// be shadowed by it.
func checkSubnetFree(subnet netip.Prefix, bridge string) error {
	own := -1
	if l, err := netlink.LinkByName(bridge); err == nil {
		own = l.Attrs().Index
	}
	linkName := func(index int) string {
		if l, err := netlink.LinkByIndex(index); err == nil {
			return l.Attrs().Name
		}
		return "link " + strconv.Itoa(index)
	}
	addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list the host's addresses: %w", err)
	}
	for _, a := range addrs {
		if a.LinkIndex == own || a.IPNet == nil {
			continue
		}
		if p, ok := prefixOf(a.IPNet); ok && p.Overlaps(subnet) {
			return fmt.Errorf("network subnet %s overlaps the address %s of %s on this host: choose a free private subnet with --network-subnet",
				subnet, a.IPNet, linkName(a.LinkIndex))
		}
	}
	routes, err := nldump.Retry(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list the host's routes: %w", err)
	}
	for _, r := range routes {
		if r.LinkIndex == own || r.Dst == nil {
			continue
		}
		p, ok := prefixOf(r.Dst)
		if !ok || p.Bits() == 0 || !p.Overlaps(subnet) {
			continue
		}
		return fmt.Errorf("network subnet %s overlaps the route to %s via %s on this host: choose a free private subnet with --network-subnet",
			subnet, p, linkName(r.LinkIndex))
	}
	return nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits).Masked(), true
}
