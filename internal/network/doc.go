// Package network gives each sandbox its own IPv4 network and enforces its
// egress and ingress policy, in-process over netlink (vishvananda/netlink)
// and nftables (google/nftables): no ip or iptables commands are spawned.
//
// # How the runtime calls it (to be wired by internal/runtime/local)
//
//	// Once at startup. New creates the bridge if needed and replaces sbx's
//	// nftables tables, in one transaction, by the rules of every sandbox
//	// recorded in StateDir: a restarted server finds its networks as they were.
//	mgr, err := network.New(network.Config{
//		Bridge:             "sbx0",                                 // default
//		Subnet:             netip.MustParsePrefix("10.203.0.0/16"), // default
//		ProtectedHostPorts: []int{apiPort},                         // never opened by an allow-list
//		DNS:                []netip.Addr{network.GatewayOf(subnet)}, // sbx's resolver (internal/dns)
//		NameResolver:       true,                                   // it enforces AllowNames
//		StateDir:           filepath.Join(runRoot, "network"),          // a tmpfs: see daemon/netstate.go
//	})
//	defer mgr.Close()
//	// Recovery: Teardown every SandboxID the runtime no longer knows.
//	// Linked=false means the sandbox's namespace (and so its veth) is gone.
//	atts, _ := mgr.List()
//
//	// Create: after the OCI runtime has created the container (so that
//	// its network namespace exists) and before the agent runs anything.
//	// Validate the policy at the API edge too: its errors name the field.
//	att, err := mgr.Setup(ctx, spec.ID, fmt.Sprintf("/proc/%d/ns/net", pid), policy)
//	// att.Addr is the sandbox's address; att.Policy is the effective policy
//	// to report on Get. On error, fail the create (Setup left nothing behind).
//
//	// Remove: preferably after the container (and with it its namespace)
//	// is gone; then the kernel deletes the veth pair with the namespace.
//	err = mgr.Teardown(ctx, spec.ID) // idempotent; unknown ids are fine
//
// Setup fails with ErrAlreadyExists when the sandbox already has a network,
// ErrResourceExhausted when the subnet is full, ErrInvalidArgument for a bad
// policy, ErrFailedPrecondition when the namespace path does not exist.
// Setup and Teardown are serialised by one mutex; Setup+Teardown costs about
// 6-7 ms on a 2-core VM (BenchmarkSetupTeardown). Teardown removes rules and
// state at once and deletes a still-existing veth pair in the background,
// because deleting a link waits 15-40 ms for the kernel (RCU); the address
// is reused only after that, and Close waits for it.
//
// Limits: a Linux bridge takes at most 1023 ports (BR_MAX_PORTS is 1024;
// port 0 is reserved), so sandboxes spread over several bridges (see
// bridges.go): the main bridge Config.Bridge takes 1023 minus one port per
// overflow bridge the subnet may need (958 for a /16), and each overflow
// bridge "<Bridge>.b<n>", made when the ones before are full, takes 1022,
// up to one address per sandbox in the subnet; a server runs at most
// about 511 x 1022 networked sandboxes whatever its subnet. Setup fails
// with ErrResourceExhausted when the subnet or the last bridge is full.
// The number of overflow bridges bounds the length of Config.Bridge
// (BridgeNameLimit: 11 characters for a /16). New rebuilds the rules of
// 1000 recorded sandboxes in one transaction in about 4 s on a 2-core VM
// (the old rules stay in force until it commits).
//
// # What it does to the host
//
//   - A bridge (Config.Bridge) holding the subnet's first address, the
//     sandboxes' gateway. Its ports are isolated: sandboxes never see each
//     other at layer 2, so all their traffic crosses the host's firewall.
//   - Beyond the sandboxes it takes, overflow bridges "<Bridge>.b<n>" (no
//     address, no IPv6, no ARP replies), each joined to it by a veth pair
//     "<Bridge>.t<n>" (an isolated port of Config.Bridge) and
//     "<Bridge>.u<n>" (a port of the overflow bridge, not isolated). Their
//     sandbox ports are isolated too, so a sandbox on one reaches only the
//     main bridge's device, the host: every sandbox packet enters the host
//     through Config.Bridge and its rules, wherever the sandbox's port is.
//     They stay, empty or not, until Destroy; New finds them again.
//   - Per sandbox a veth pair "sbxv<hash>" / "eth0" (hash: 10 hex digits of
//     SHA-256 of the sandbox id), the sandbox end created directly in its
//     namespace with a /32 address, an on-link route to the gateway and a
//     default route via it, and a MAC derived from the address.
//   - nftables tables named Config.Table ("sbx") in families inet and bridge,
//     described in ruleset.go; nothing else in nftables is touched. New
//     replaces both tables in one transaction. Egress that leaves through
//     another link gets that link's address (source NAT from a map that a
//     watcher of the host's address and route changes keeps current; not
//     masquerade, whose link watch walks the conntrack table whenever any
//     link goes down: uplinks.go).
//   - net.ipv4.ip_forward is turned on if it was off (Manager.ForwardingEnabled
//     says so) and left on: routing the sandboxes needs it. It makes the host
//     route between all its interfaces; sbx's rules only cover traffic from
//     and to the bridge, so a host that relied on ip_forward=0 as its
//     firewall needs a forward policy of its own.
//   - One JSON file per sandbox in Config.StateDir (address, names, bridge,
//     policy).
//   - IPv6 is disabled on the bridge; sandboxes get none (their IPv6 frames
//     are dropped at the bridge port).
//
// Kernel needs: nf_tables with the inet and bridge families, ct, nat
// and reject (Debian's stock kernel has all). If br_netfilter is loaded the
// inet rules also see bridged frames. On the main bridge there are none
// (its ports are isolated); on an overflow bridge a sandbox's frames are
// bridged to the trunk first, and that pass is left untracked (notrack),
// so that conntrack and NAT happen when they are routed from the main
// bridge (ruleset.go). The overflow tests run with and without it.
//
// # Policy
//
// The zero Policy is the default: egress to the internet allowed; the host
// itself (every host address, the gateway included) except DNS to
// Config.DNS, other sandboxes, private ranges (10/8, 172.16/12, 192.168/16,
// 100.64/10), link-local 169.254/16 (cloud metadata), multicast and
// reserved ranges rejected (TCP reset or ICMP admin-prohibited, so programs
// fail fast instead of hanging). DenyEgress rejects everything but DNS to
// Config.DNS (DenyDNS closes that too). AllowCIDRs restricts egress to the
// listed prefixes and ports and may open blocked ranges; a prefix other than
// 0.0.0.0/0 that covers a host address also opens that host address (never
// Config.ProtectedHostPorts). Other sandboxes open only to members of the
// same PeerGroup; Config.HostBlock and the gateway are never opened.
// Ingress: other sandboxes are rejected unless in the same PeerGroup;
// DenyIngress also rejects new connections from outside the host (which
// can reach a sandbox only if it routes the subnet through this host); the
// host itself (sbx's port proxy) can always connect. A sandbox's source
// address and MAC are pinned at its bridge port, so the address-keyed rules
// cannot be fooled by forged packets. Sandboxes have no IPv6: it is
// dropped at the bridge.
//
// # Names
//
// AllowNames works with sbx's resolver (internal/dns), which listens on the
// gateway (Config.DNS, with Config.NameResolver set; without it Setup
// rejects AllowNames, since nothing would enforce it). The resolver finds
// the asking sandbox with Lookup (a read-locked map, never waiting for
// Setup), answers only allowed names, and before it answers calls
// AllowResolved with the A records, which adds them to the sandbox's own
// set r-<key> (ipv4_addr, flags timeout) with a timeout of a quarter more
// than the TTL asked for. The sandbox's egress chain accepts that set on
// every port, after DNS, peers and AllowCIDRs. AllowResolved never adds
// what the sandbox may not reach whatever DNS says: the ranges blocked by
// default, the sandbox subnet, Config.HostBlock (whole prefixes, whatever
// their ports) and the host's own addresses (which take the input path,
// where the set is not consulted anyway). A set holds at most
// MaxResolvedPerSandbox live entries. Entries are refreshed in one
// transaction of add, delete, add (older kernels keep the old timeout on a
// plain add); an entry that already has the TTL left is not touched, so a
// repeated answer costs no nftables work. The sets are not persisted: they
// start empty after New (a restart), and sandboxes' clients resolve again
// when their cached answers expire; until then their connections to
// resolved addresses are rejected, established ones excepted.
package network
