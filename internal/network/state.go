package network

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// maxStateFile bounds a state file we read back; ours are well under 16 KiB.
const maxStateFile = 1 << 20

// Attachment is one sandbox's network as set up on the host.
type Attachment struct {
	// SandboxID is the sandbox the network belongs to.
	SandboxID string `json:"sandbox_id"`
	// Addr is the sandbox's address; Gateway the bridge's.
	Addr    netip.Addr `json:"addr"`
	Gateway netip.Addr `json:"gateway"`
	// HostLink is the host end of the veth pair ("sbxv" + a hash of the id);
	// the sandbox end is "eth0" in its namespace.
	HostLink string `json:"host_link"`
	// Bridge is the bridge HostLink is a port of: Config.Bridge or one of
	// its overflow bridges. Empty (state from before overflow bridges)
	// means Config.Bridge.
	Bridge string `json:"bridge,omitempty"`
	// MAC is the sandbox end's hardware address (derived from Addr).
	MAC string `json:"mac"`
	// NetNS is the namespace path Setup was given.
	NetNS string `json:"netns"`
	// Policy is the effective policy.
	Policy Policy `json:"policy"`
	// Linked reports whether the veth still exists; false means the
	// sandbox's namespace is gone and only Teardown is left to do.
	Linked bool `json:"-"`
}

// key is the short hash that names a sandbox's kernel objects and state
// file: 10 hex digits of SHA-256, so names fit IFNAMSIZ and any id is safe
// as a file name.
func key(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:5])
}

// dfltKey names the default policy's shared chains (e-dflt, i-dflt,
// h-dflt); a sandbox's key is hex, so no sandbox's chain can have it.
const dfltKey = "dflt"

// Kernel object names derived from a key.
func hostLinkName(k string) string { return "sbxv" + k }
func egressChain(k string) string  { return "e-" + k }
func ingressChain(k string) string { return "i-" + k }
func hostChain(k string) string    { return "h-" + k }
func groupSet(g string) string     { return "g-" + key(g) }
func resolvedSet(k string) string  { return "r-" + k }

// macFor derives a locally administered unicast MAC from an address, so that
// the MAC pinned by the anti-spoofing rules is unique as long as the address is.
func macFor(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x02, 0x5b, b[0], b[1], b[2], b[3]}
}

// stateStore keeps one JSON file per attachment in dir.
type stateStore struct{ dir string }

func (s stateStore) path(id string) string { return filepath.Join(s.dir, key(id)+".json") }

// save writes a atomically: a crash leaves the old file or the new one.
// It does not fsync (as the runtime's records do not): the file must
// survive a killed server, not a power loss, which takes the namespaces,
// links and rules it describes with it; a sync per sandbox cost a journal
// commit on every create.
func (s stateStore) save(a *Attachment) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), s.path(a.SandboxID))
}

func (s stateStore) remove(id string) error {
	if err := os.Remove(s.path(id)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// load reads every state file. Leftover temporary files from a crash are
// removed; a file that cannot be parsed is an error, since guessing would
// leak or double-allocate an address.
func (s stateStore) load() ([]*Attachment, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var out []*Attachment
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			os.Remove(filepath.Join(s.dir, name))
			continue
		}
		if !strings.HasSuffix(name, ".json") || !e.Type().IsRegular() {
			continue
		}
		f, err := os.Open(filepath.Join(s.dir, name))
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(f, maxStateFile))
		f.Close()
		if err != nil {
			return nil, err
		}
		var a Attachment
		if err := json.Unmarshal(b, &a); err != nil {
			return nil, fmt.Errorf("state file %s: %w (move it away if the sandbox is gone)", name, err)
		}
		if key(a.SandboxID)+".json" != name || !a.Addr.Is4() {
			return nil, fmt.Errorf("state file %s does not match its content (move it away if the sandbox is gone)", name)
		}
		out = append(out, &a)
	}
	return out, nil
}

// ipam hands out addresses of a subnet. It starts each search after the last
// address handed out, so that a freed address is not reused at once (stale
// conntrack entries and ARP caches of the old owner age out first).
type ipam struct {
	subnet netip.Prefix
	used   map[netip.Addr]bool
	last   netip.Addr
}

func newIPAM(subnet netip.Prefix) *ipam {
	return &ipam{subnet: subnet, used: map[netip.Addr]bool{}, last: subnet.Addr().Next()}
}

// first and end bound the sandbox addresses: after the gateway, before broadcast.
func (p *ipam) first() netip.Addr { return p.subnet.Addr().Next().Next() }

func (p *ipam) isBroadcast(a netip.Addr) bool {
	return !p.subnet.Contains(a.Next())
}

func (p *ipam) allocate() (netip.Addr, bool) {
	size := 1 << (32 - p.subnet.Bits())
	a := p.last
	for range size {
		a = a.Next()
		if !p.subnet.Contains(a) || p.isBroadcast(a) || a.Less(p.first()) {
			a = p.first()
		}
		if !p.used[a] {
			p.used[a] = true
			p.last = a
			return a, true
		}
	}
	return netip.Addr{}, false
}

func (p *ipam) release(a netip.Addr) { delete(p.used, a) }
