package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/google/nftables"
	mnl "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/network/nldump"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// maxIDLen bounds a sandbox id; ids are hashed for every name derived from
// them, so only memory is at stake.
const maxIDLen = 256

// Manager owns the bridges, sbx's nftables tables and one attachment per
// sandbox. Its methods are safe for concurrent use.
type Manager struct {
	cfg   Config
	state stateStore

	mu      sync.Mutex
	nl      *netlink.Handle
	nft     *nftables.Conn
	rs      *ruleset
	bridges []*bridge // the main bridge first, then the overflow ones by n
	ipam    *ipam
	atts    map[string]*Attachment // by sandbox id
	groups  map[string]int         // peer group -> members

	// Background deletion of torn-down sandboxes' links (see Teardown).
	reapNL  *netlink.Handle
	reapers sync.WaitGroup
	reaping map[string]chan struct{} // host link name -> closed when deleted
	reapErr error

	uplinks *uplinkWatch // see uplinks.go
	// uplinksAtStart is what recover wrote into the uplinks map, for the
	// watcher's first sync to compare with.
	uplinksAtStart uplinkState
	res            resolver       // for sbx's resolver; see resolved.go
	hostBlock      []netip.Prefix // Config.HostBlock, parsed

	// ForwardingEnabled reports whether New had to turn on the host's
	// net.ipv4.ip_forward (it is left on; sandboxes need it).
	ForwardingEnabled bool
}

// New creates the bridge and sbx's nftables tables if needed, reads the
// state directory and rebuilds the firewall from it in one atomic nftables
// transaction, so that a restarted server finds every sandbox's network as
// it was. It also turns on IPv4 forwarding.
func New(cfg Config) (*Manager, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "%w", err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, sandbox.Internal("network state dir: %w", err)
	}
	m := &Manager{
		cfg:     cfg,
		state:   stateStore{dir: cfg.StateDir},
		rs:      newRuleset(cfg),
		ipam:    newIPAM(cfg.Subnet),
		atts:    map[string]*Attachment{},
		groups:  map[string]int{},
		reaping: map[string]chan struct{}{},
		res: resolver{
			byAddr:  map[netip.Addr]lookupEntry{},
			names:   map[string]bool{},
			entries: map[string]map[netip.Addr]time.Time{},
		},
	}
	for _, r := range cfg.HostBlock {
		p, _ := ParseCIDR("", r.CIDR) // validated by withDefaults
		m.hostBlock = append(m.hostBlock, p)
	}
	if m.nl, err = netlink.NewHandle(); err != nil {
		return nil, sandbox.Internal("netlink: %w", err)
	}
	if m.reapNL, err = netlink.NewHandle(); err != nil {
		m.nl.Close()
		return nil, sandbox.Internal("netlink: %w", err)
	}
	if m.nft, err = nftables.New(nftables.AsLasting(), nftables.WithSockOptions(bigBuffers)); err != nil {
		m.nl.Close()
		return nil, sandbox.Internal("nftables: %w", err)
	}
	if m.res.nft, err = nftables.New(nftables.AsLasting()); err != nil {
		m.Close()
		return nil, sandbox.Internal("nftables: %w", err)
	}
	if err := m.recover(); err != nil {
		m.Close()
		return nil, err
	}
	if err := m.startUplinkWatch(); err != nil {
		m.Close()
		return nil, sandbox.Internal("%w", err)
	}
	return m, nil
}

func (m *Manager) recover() error {
	main, err := ensureBridge(m.nl, m.cfg)
	if err != nil {
		return sandbox.FailedPrecondition(sandbox.ReasonNetworkSetup, "network bridge: %w", err)
	}
	m.bridges = []*bridge{{n: 0, link: main}}
	atts, err := m.state.load()
	if err != nil {
		return sandbox.FailedPrecondition(sandbox.ReasonNetworkSetup, "network state in %s: %w", m.cfg.StateDir, err)
	}
	kept := atts[:0]
	for _, a := range atts {
		if twin := m.rebindTwin(a); twin != nil {
			// Rebind was cut short between writing a's record and
			// removing its twin's: one network under two ids. Either is
			// only being made or torn down (see Rebind); keep one.
			if err := m.state.remove(a.SandboxID); err != nil {
				return sandbox.Internal("remove network state of sandbox %q: %w", a.SandboxID, err)
			}
			continue
		}
		if !m.cfg.Subnet.Contains(a.Addr) || m.ipam.used[a.Addr] {
			return sandbox.FailedPrecondition(sandbox.ReasonNetworkSetup,
				"network state of sandbox %q: address %s is outside subnet %s or taken twice; was the subnet changed? Stop those sandboxes or restore the old subnet", a.SandboxID, a.Addr, m.cfg.Subnet)
		}
		if a.Bridge == "" {
			a.Bridge = m.cfg.Bridge
		}
		if _, ok := overflowIndex(m.cfg.Bridge, a.Bridge, m.cfg.Subnet); !ok && a.Bridge != m.cfg.Bridge {
			return sandbox.FailedPrecondition(sandbox.ReasonNetworkSetup,
				"network state of sandbox %q: bridge %s is neither %s nor one of its overflow bridges; was the bridge renamed? Stop those sandboxes or restore the old bridge name", a.SandboxID, a.Bridge, m.cfg.Bridge)
		}
		m.ipam.used[a.Addr] = true
		m.atts[a.SandboxID] = a
		m.res.index(a)
		if a.Policy.PeerGroup != "" {
			m.groups[a.Policy.PeerGroup]++
		}
		kept = append(kept, a)
	}
	atts = kept
	uplinks, routed, err := uplinkAddrs(m.nl)
	m.uplinksAtStart = uplinkState{uplinks, routed}
	if err != nil {
		return sandbox.Internal("%w", err)
	}
	m.rs.flushTables(m.nft)
	if err := m.rs.addBase(m.nft, uplinks); err != nil {
		return sandbox.Internal("nftables rules: %w", err)
	}
	for _, a := range atts {
		if err := m.rs.addSandbox(m.nft, a); err != nil {
			return sandbox.Internal("nftables rules of sandbox %q: %w", a.SandboxID, err)
		}
	}
	if err := m.nft.Flush(); err != nil {
		return sandbox.FailedPrecondition(sandbox.ReasonNetworkSetup, "install nftables table %s (is nf_tables available?): %w", m.cfg.Table, err)
	}
	if m.ForwardingEnabled, err = enableForwarding(); err != nil {
		return sandbox.FailedPrecondition(sandbox.ReasonNetworkSetup, "%w", err)
	}
	if err := m.recoverBridges(atts); err != nil {
		return err
	}
	// Veths on our bridges that no state file knows (a Teardown whose
	// background deletion had not finished when the process ended, a state
	// file removed by hand, the trunk of a bridge deleted by hand) match no
	// rule, so carry nothing: remove them.
	links, err := nldump.Retry(m.nl.LinkList)
	if err != nil {
		return sandbox.Internal("list links: %w", err)
	}
	known := map[string]bool{}
	ours := map[int]bool{}
	for _, a := range atts {
		known[a.HostLink] = true
	}
	for _, b := range m.bridges {
		ours[b.link.Attrs().Index] = true
		if b.n > 0 {
			known[trunkName(m.cfg.Bridge, b.n)] = true
			known[uplinkName(m.cfg.Bridge, b.n)] = true
		}
	}
	for _, l := range links {
		if ours[l.Attrs().MasterIndex] && l.Type() == "veth" && !known[l.Attrs().Name] {
			if err := detach(m.nl, l.Attrs().Name); err != nil {
				return sandbox.Internal("remove stray veth: %w", err)
			}
		}
	}
	return nil
}

// rebindTwin returns the attachment recovered so far that a is a copy of
// under another id (same address and link, maybe another policy), if any.
func (m *Manager) rebindTwin(a *Attachment) *Attachment {
	if !m.ipam.used[a.Addr] {
		return nil
	}
	for _, b := range m.atts {
		if b.Addr == a.Addr && b.HostLink == a.HostLink {
			return b
		}
	}
	return nil
}

// nftBuffer is the netlink socket buffer size for nftables transactions.
// New rebuilds every sandbox's rules in one transaction, which for
// thousands of sandboxes is megabytes of messages and of acknowledgements,
// beyond the default buffers (and beyond net.core.wmem_max, hence FORCE;
// the size only bounds accounting, nothing is allocated up front).
const nftBuffer = 256 << 20

func bigBuffers(c *mnl.Conn) error {
	// The kernel acknowledges each message of a batch; without this, each
	// acknowledgement carries a copy of its whole message back.
	if err := c.SetOption(mnl.CapAcknowledge, true); err != nil {
		return err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, nftBuffer); serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, nftBuffer)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// Config returns the configuration in effect, defaults filled in.
func (m *Manager) Config() Config { return m.cfg }

// CheckRequest checks a sandbox id and the policy asked for it, as Setup
// and Rebind do first.
func (m *Manager) CheckRequest(sandboxID string, p Policy) error {
	if sandboxID == "" || len(sandboxID) > maxIDLen {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "sandbox id must be 1-%d bytes", maxIDLen)
	}
	if err := p.Validate(); err != nil {
		return err
	}
	if len(p.AllowNames) > 0 && !m.cfg.NameResolver {
		return sandbox.FailedPrecondition(sandbox.ReasonNameResolverOff,
			"network.allow_names: this server does not run sbx's DNS resolver (its config file sets networkDNS), so nothing can enforce a name allow-list; use allow_cidrs, or restart sbx serve without networkDNS")
	}
	return nil
}

// Setup gives the sandbox a network: a veth pair from the bridge into the
// namespace at netnsPath (e.g. /proc/<pid>/ns/net of the container's
// process), an address from the subnet, a default route via the bridge and
// the firewall rules of p. A failed Setup leaves nothing behind.
func (m *Manager) Setup(ctx context.Context, sandboxID, netnsPath string, p Policy) (*Attachment, error) {
	if err := m.CheckRequest(sandboxID, p); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, sandbox.Errorf(sandbox.ErrDeadlineExceeded, sandbox.ReasonNetworkSetup, "network setup of sandbox %q: %w", sandboxID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// The same id's previous veth pair may still be going away.
	for done := m.reaping[hostLinkName(key(sandboxID))]; done != nil; done = m.reaping[hostLinkName(key(sandboxID))] {
		m.mu.Unlock()
		<-done
		m.mu.Lock()
	}
	if _, ok := m.atts[sandboxID]; ok {
		return nil, sandbox.Errorf(sandbox.ErrAlreadyExists, sandbox.ReasonSandboxExists, "sandbox %q already has a network; tear it down first", sandboxID)
	}
	k := key(sandboxID)
	for id, a := range m.atts {
		// A rebound attachment keeps the link named after its first
		// sandbox (Rebind): compare links, and state files by id.
		if key(id) == k || a.HostLink == hostLinkName(k) {
			return nil, sandbox.Internal("sandbox ids %q and %q hash to the same network name", id, sandboxID)
		}
	}
	addr, ok := m.ipam.allocate()
	if !ok {
		return nil, sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonSubnetExhausted,
			"no free address in subnet %s; stop some sandboxes or configure a larger subnet", m.cfg.Subnet)
	}
	b, err := m.pickBridge()
	if err != nil {
		m.ipam.release(addr)
		return nil, err
	}
	a := &Attachment{
		SandboxID: sandboxID,
		Addr:      addr,
		Gateway:   m.cfg.gateway(),
		HostLink:  hostLinkName(k),
		Bridge:    b.name(),
		MAC:       macFor(addr).String(),
		NetNS:     netnsPath,
		Policy:    p,
	}
	// State first: a crash after this point leaves a record that the next
	// New turns back into rules and that Teardown can remove.
	if err := m.state.save(a); err != nil {
		m.ipam.release(addr)
		return nil, sandbox.Internal("save network state: %w", err)
	}
	if err := m.install(a, b); err != nil {
		m.ipam.release(addr)
		m.state.remove(sandboxID)
		return nil, err
	}
	a.Linked = true
	m.atts[sandboxID] = a
	m.res.index(a)
	if p.PeerGroup != "" {
		m.groups[p.PeerGroup]++
	}
	cp := *a
	return &cp, nil
}

// Rebind hands the network of sandbox from to sandbox to, with policy p:
// the same namespace, veth pair, address and bridge port. Only the policy's
// rules change, in one nftables transaction, when p or the id they are
// keyed by differ (a default-policy sandbox's rules are keyed by its
// address and port, not its id, so between two of those nothing changes);
// to's state file is written first and from's removed last, and DNS
// queries from the address are answered for to. The caller makes sure
// nothing of from is left in the namespace (the local runtime hands a
// namespace on only when its sandbox left no socket and no packet in it).
func (m *Manager) Rebind(from, to string, p Policy) (*Attachment, error) {
	if err := m.CheckRequest(to, p); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.atts[from]
	if !ok {
		return nil, sandbox.NotFound(sandbox.ReasonSandboxNotFound, "sandbox %q has no network", from)
	}
	if _, ok := m.atts[to]; ok {
		return nil, sandbox.Errorf(sandbox.ErrAlreadyExists, sandbox.ReasonSandboxExists, "sandbox %q already has a network; tear it down first", to)
	}
	k := key(to)
	for id := range m.atts {
		if id != from && key(id) == k {
			return nil, sandbox.Internal("sandbox ids %q and %q hash to the same network name", id, to)
		}
	}
	b := *a
	b.SandboxID, b.Policy = to, p
	// The new record first: a crash before the old one is removed leaves
	// two records of one network, which New reduces to one (rebindTwin),
	// rebuilding the rules from it; removing the old first could leave
	// none, and New would then delete the link of a sandbox that may
	// still run. A Rebind happens only while one of the two sandboxes is
	// being made and the other torn down, so after a crash recovery tears
	// both down whichever record is kept.
	if err := m.state.save(&b); err != nil {
		return nil, sandbox.Internal("save network state: %w", err)
	}
	if !isDefaultPolicy(a.Policy) || !isDefaultPolicy(p) {
		oldGroup := a.Policy.PeerGroup
		last := oldGroup != "" && oldGroup != p.PeerGroup && m.groups[oldGroup] <= 1
		oldSet := m.rs.groups[groupSet(oldGroup)]
		err := m.rs.delPolicy(m.nft, a, last)
		if err == nil {
			err = m.rs.addPolicy(m.nft, &b)
		}
		if err == nil {
			err = m.nft.Flush()
		}
		if err != nil {
			// The transaction is all or nothing: from's rules stand, and
			// so does the ruleset's record of the group sets.
			m.state.remove(to)
			if last && oldSet != nil {
				m.rs.groups[groupSet(oldGroup)] = oldSet
			}
			if p.PeerGroup != "" && m.groups[p.PeerGroup] == 0 {
				delete(m.rs.groups, groupSet(p.PeerGroup))
			}
			return nil, sandbox.Errorf(sandbox.ErrInternal, sandbox.ReasonNetworkSetup, "change the firewall rules of sandbox %q for %q: %w", from, to, err)
		}
		if oldGroup != "" {
			if m.groups[oldGroup]--; m.groups[oldGroup] <= 0 {
				delete(m.groups, oldGroup)
			}
		}
		if p.PeerGroup != "" {
			m.groups[p.PeerGroup]++
		}
	}
	if err := m.state.remove(from); err != nil {
		return nil, sandbox.Internal("remove network state of sandbox %q: %w", from, err)
	}
	m.res.unindex(a)
	delete(m.atts, from)
	m.atts[to] = &b
	m.res.index(&b)
	cp := b
	return &cp, nil
}

// install adds the rules, then the links on bridge b (or another one, when
// b turns out to be full); on failure it removes both.
func (m *Manager) install(a *Attachment, b *bridge) error {
	if err := m.rs.addSandbox(m.nft, a); err != nil {
		return sandbox.Internal("nftables rules: %w", err)
	}
	if err := m.nft.Flush(); err != nil {
		if m.groups[a.Policy.PeerGroup] == 0 {
			delete(m.rs.groups, groupSet(a.Policy.PeerGroup))
		}
		return sandbox.Errorf(sandbox.ErrInternal, sandbox.ReasonNetworkSetup, "install firewall rules of sandbox %q: %w", a.SandboxID, err)
	}
	err := attach(m.nl, b.link, m.cfg, a)
	for tries := 0; errors.Is(err, unix.EXFULL) && tries <= len(m.bridges); tries++ {
		// Links that are not sandboxes of ours hold ports of b: take it
		// as full, and try the next bridge with room.
		detach(m.nl, a.HostLink)
		b.used = max(b.used, capacity(m.cfg.Subnet, b.n))
		if b, err = m.pickBridge(); err != nil {
			break
		}
		a.Bridge = b.name()
		if err = m.state.save(a); err != nil {
			err = sandbox.Internal("save network state: %w", err)
			break
		}
		err = attach(m.nl, b.link, m.cfg, a)
	}
	if err == nil {
		b.used++
		return nil
	}
	detach(m.nl, a.HostLink)
	m.removeRules(a, false)
	var serr *sandbox.Error
	switch {
	case errors.As(err, &serr):
		return err
	case errors.Is(err, unix.EXFULL):
		return sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonSubnetExhausted,
			"network of sandbox %q: no bridge has a free port; stop some sandboxes: %w", a.SandboxID, err)
	case errors.Is(err, os.ErrNotExist):
		return sandbox.Errorf(sandbox.ErrFailedPrecondition, sandbox.ReasonNetworkSetup, "network of sandbox %q: %w", a.SandboxID, err)
	}
	return sandbox.Errorf(sandbox.ErrInternal, sandbox.ReasonNetworkSetup, "network of sandbox %q: %w", a.SandboxID, err)
}

func (m *Manager) removeRules(a *Attachment, portDrop bool) error {
	last := a.Policy.PeerGroup != "" && m.groups[a.Policy.PeerGroup] <= 1
	if _, ok := m.atts[a.SandboxID]; !ok {
		// Not counted yet (a failed Setup): last when no one else is in.
		last = a.Policy.PeerGroup != "" && m.groups[a.Policy.PeerGroup] == 0
	}
	if err := m.rs.delSandbox(m.nft, a, last, portDrop); err != nil {
		return err
	}
	return m.nft.Flush()
}

// Teardown removes the sandbox's firewall rules and state at once and its
// veth pair right after, in the background: deleting a link waits for the
// kernel's RCU grace periods (15-40 ms) and needs nothing from the caller.
// Until the link is gone its bridge port drops every frame and the
// sandbox's address stays reserved. Teardown is idempotent: an
// unknown sandbox is not an error. (When the sandbox's namespace is gone
// already, the kernel has deleted the pair itself.)
func (m *Manager) Teardown(ctx context.Context, sandboxID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.atts[sandboxID]
	if !ok {
		return nil
	}
	m.res.unindex(a) // its DNS stops being answered first
	if err := m.removeRules(a, true); err != nil {
		return sandbox.Errorf(sandbox.ErrInternal, sandbox.ReasonNetworkSetup, "remove firewall rules of sandbox %q: %w", sandboxID, err)
	}
	// The rules are gone: forget them even if a later step fails, so that
	// a retried Teardown does not try to delete them again.
	delete(m.atts, sandboxID)
	if g := a.Policy.PeerGroup; g != "" {
		if m.groups[g]--; m.groups[g] <= 0 {
			delete(m.groups, g)
		}
	}
	done := make(chan struct{})
	m.reaping[a.HostLink] = done
	m.reapers.Add(1)
	go m.reap(a, done)
	if err := m.state.remove(sandboxID); err != nil {
		return sandbox.Internal("remove network state of sandbox %q: %w", sandboxID, err)
	}
	return nil
}

// reap deletes a torn-down sandbox's veth pair, then frees its address. A
// link that cannot be deleted keeps its address reserved; the next New
// removes it, as it removes every veth on the bridge that no state knows.
func (m *Manager) reap(a *Attachment, done chan struct{}) {
	defer m.reapers.Done()
	err := detach(m.reapNL, a.HostLink)
	m.mu.Lock()
	if err == nil {
		if err = m.rs.delPort(m.nft, a.HostLink); err == nil {
			err = m.nft.Flush()
		}
	}
	if err == nil {
		m.ipam.release(a.Addr)
		if b := m.bridgeNamed(a.Bridge); b != nil {
			b.used--
		}
	} else {
		m.reapErr = fmt.Errorf("delete veth of sandbox %q: %w", a.SandboxID, err)
	}
	delete(m.reaping, a.HostLink)
	m.mu.Unlock()
	close(done)
}

// settle waits until every veth pair that Teardown let go is deleted and
// returns the last error of doing so, if any.
func (m *Manager) settle() error {
	m.reapers.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.reapErr
	m.reapErr = nil
	return err
}

// List returns every attachment the manager knows, sorted by sandbox id;
// Linked is false for those whose namespace is gone.
func (m *Manager) List() ([]Attachment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Attachment, 0, len(m.atts))
	for _, a := range m.atts {
		cp := *a
		_, err := m.nl.LinkByName(a.HostLink)
		cp.Linked = err == nil
		out = append(out, cp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SandboxID < out[j].SandboxID })
	return out, nil
}

// Get returns the attachment of one sandbox.
func (m *Manager) Get(sandboxID string) (*Attachment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.atts[sandboxID]
	if !ok {
		return nil, sandbox.NotFound(sandbox.ReasonSandboxNotFound, "sandbox %q has no network", sandboxID)
	}
	cp := *a
	return &cp, nil
}

// Close waits for pending link deletions and releases the manager's
// netlink sockets; the network stays up.
func (m *Manager) Close() error {
	m.stopUplinkWatch()
	err := m.settle()
	if m.reapNL != nil {
		m.reapNL.Close()
	}
	if m.nft != nil {
		m.nft.CloseLasting()
	}
	if m.res.nft != nil {
		m.res.nft.CloseLasting()
	}
	if m.nl != nil {
		m.nl.Close()
	}
	return err
}

// Destroy tears down every sandbox's network, then removes sbx's tables,
// the bridges (the overflow ones with their trunks too) and the state
// directory's records: for uninstalling and tests. ip_forward stays as it
// is.
func (m *Manager) Destroy(ctx context.Context) error {
	ids := make([]string, 0)
	m.mu.Lock()
	for id := range m.atts {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	var errs []error
	for _, id := range ids {
		errs = append(errs, m.Teardown(ctx, id))
	}
	errs = append(errs, m.settle())
	m.stopUplinkWatch() // before the tables it writes to go
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rs.flushTables(m.nft)
	if err := m.nft.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("remove nftables tables: %w", err))
	}
	for _, b := range m.bridges[1:] {
		if err := removeOverflow(m.nl, m.cfg.Bridge, b.n); err != nil {
			errs = append(errs, fmt.Errorf("remove overflow bridge: %w", err))
		}
	}
	if err := m.nl.LinkDel(m.bridges[0].link); err != nil {
		errs = append(errs, fmt.Errorf("remove bridge: %w", err))
	}
	m.bridges = m.bridges[:1]
	return errors.Join(errs...)
}
