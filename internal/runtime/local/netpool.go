package local

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sbx-run/sbx/internal/network"
	"github.com/sbx-run/sbx/internal/osthread"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// A sandbox's network namespace is made by sbx, not by the OCI runtime
// (netnsFirst), and kept, with its veth pair, address and bridge port, for
// the next sandbox when its sandbox left nothing in it: a namespace with
// its network costs about 2 ms of host CPU to make and to destroy (the
// veth pair, its sysfs and sysctl entries, the namespace's own tables and
// its destruction's RCU waits), a sixth of all a sandbox's life costs in
// sustained creates.
//
// Left nothing means: no socket in the namespace (/proc/net/sockstat:
// sockets used 0, TCP time-wait 0) and no packet ever sent on any of its
// links, loopback included (/proc/net/dev), so that nothing a sandbox did,
// not even how much it sent, reaches the next one. A sandbox cannot change
// the namespace otherwise: the namespace belongs to the host's user
// namespace, in which sandbox root has no capability (with user namespaces
// on), and no sandbox has CAP_NET_ADMIN. A kept namespace has the default
// policy's rules; the next sandbox's policy replaces them in one nftables
// transaction before its container starts (network.Manager.Rebind).
// gVisor's namespaces are never kept: its Sentry takes the interface over.

// maxKeptNetns bounds the namespaces kept between sandboxes: enough for
// the creates that overlap a sandbox's teardown at hundreds per second;
// each holds an address and a bridge port, which the next create takes
// (whatever its policy) before it would make a namespace of its own.
const maxKeptNetns = 32

// KeptNetnsPrefix starts the network id of a kept namespace (in the
// network state files); no sandbox id can start with it (validID).
const KeptNetnsPrefix = "~kept-"

// keptSeq numbers kept namespaces' ids, unique in the process (tests run
// several runtimes on one network manager).
var keptSeq atomic.Uint64

// netnsPool is the namespaces kept for reuse.
type netnsPool struct {
	mu   sync.Mutex
	idle []keptNetns // the most recently kept last

	// Counters since the runtime started (NetnsReuse).
	reused, made, kept, dropped atomic.Uint64
}

type keptNetns struct {
	id string // its network's id in network.Manager while kept
	ns *sandboxNetns
}

// NetnsReuse says how sandboxes got their network namespaces since the
// runtime started: reused ones, new ones, and of the namespaces of
// sandboxes that ended, those kept and those destroyed.
type NetnsReuse struct {
	Reused, Made, Kept, Dropped uint64
}

// NetnsReuse returns the pool's counters.
func (r *Runtime) NetnsReuse() NetnsReuse {
	p := &r.netPool
	return NetnsReuse{Reused: p.reused.Load(), Made: p.made.Load(), Kept: p.kept.Load(), Dropped: p.dropped.Load()}
}

// reusesNetns says whether this runtime keeps sandboxes' namespaces.
func (r *Runtime) reusesNetns() bool {
	return r.netnsFirst() && r.oci.name != "runsc"
}

// takeNetns hands a kept namespace to sandbox id, with its network under
// policy p (checked by the caller), or returns nil when none is kept.
func (r *Runtime) takeNetns(ctx context.Context, id string, p sandbox.NetworkPolicy) (*sandboxNetns, *network.Attachment) {
	for {
		r.netPool.mu.Lock()
		n := len(r.netPool.idle)
		if n == 0 {
			r.netPool.mu.Unlock()
			return nil, nil
		}
		k := r.netPool.idle[n-1]
		r.netPool.idle = r.netPool.idle[:n-1]
		r.netPool.mu.Unlock()
		att, err := r.cfg.Network.Rebind(k.id, id, NetworkPolicy(p))
		if err != nil {
			// Torn down meanwhile (another runtime's recovery), or a
			// record or rules that could not be written: not usable.
			k.ns.Close()
			r.cfg.Network.Teardown(ctx, k.id)
			continue
		}
		r.netPool.reused.Add(1)
		return k.ns, att
	}
}

// releaseNetns keeps the namespace of the ended sandbox id for another,
// when it may, or tears its network down. Its container must be gone.
func (r *Runtime) releaseNetns(ctx context.Context, id string, ns *sandboxNetns) error {
	if ns != nil && r.reusesNetns() && r.keepNetns(id, ns) {
		return nil
	}
	ns.Close()
	return r.teardownNetwork(ctx, id)
}

// keepNetns puts ns in the pool under a new id if it is clean and there is
// room, and reports whether it did.
func (r *Runtime) keepNetns(id string, ns *sandboxNetns) bool {
	pool := &r.netPool
	pool.mu.Lock()
	full := len(pool.idle) >= maxKeptNetns
	pool.mu.Unlock()
	if full {
		pool.dropped.Add(1)
		return false
	}
	if clean, err := netnsClean(ns.f); err != nil || !clean {
		pool.dropped.Add(1)
		return false
	}
	// Kept with the default policy: what its next sandbox asks for is
	// set when it takes it.
	kept := KeptNetnsPrefix + strconv.FormatUint(keptSeq.Add(1), 10)
	if _, err := r.cfg.Network.Rebind(id, kept, network.Policy{}); err != nil {
		pool.dropped.Add(1)
		return false
	}
	pool.mu.Lock()
	pool.idle = append(pool.idle, keptNetns{id: kept, ns: ns})
	pool.mu.Unlock()
	pool.kept.Add(1)
	return true
}

// Close tears down the networks the runtime kept for reuse; sandboxes and
// their networks stay.
func (r *Runtime) Close(ctx context.Context) error {
	if r.cfg.Network == nil {
		return nil
	}
	r.netPool.mu.Lock()
	idle := r.netPool.idle
	r.netPool.idle = nil
	r.netPool.mu.Unlock()
	var errs []error
	for _, k := range idle {
		k.ns.Close()
		errs = append(errs, r.cfg.Network.Teardown(ctx, k.id))
	}
	return errors.Join(errs...)
}

// socketsSettle bounds the wait for a namespace's last sockets to be freed
// once its processes are gone: the kernel frees some (the agent's ends of
// our connections) a few milliseconds later (1–8 ms in 25 test runs here).
const socketsSettle = 25 * time.Millisecond

// netnsClean reports whether nothing of a sandbox is left in the network
// namespace ns: no socket, no packet ever sent on any of its links. Sockets
// that a sandbox which sent nothing leaves are waited for, up to
// socketsSettle.
func netnsClean(ns *os.File) (bool, error) {
	var sockstat, dev []byte
	read := func(links bool) error {
		return osthread.InNetns(ns, func() error {
			var err error
			if sockstat, err = os.ReadFile("/proc/thread-self/net/sockstat"); err != nil || !links {
				return err
			}
			dev, err = os.ReadFile("/proc/thread-self/net/dev")
			return err
		})
	}
	if err := read(true); err != nil {
		return false, err
	}
	if !noneSent(dev) {
		return false, nil
	}
	for deadline := time.Now().Add(socketsSettle); !noSockets(sockstat); {
		if time.Now().After(deadline) {
			return false, nil
		}
		time.Sleep(time.Millisecond)
		if err := read(false); err != nil {
			return false, err
		}
	}
	return true, nil
}

// noSockets reports whether a /proc/net/sockstat says no socket is open
// and no TCP connection is in time-wait (both counts are the
// namespace's own).
func noSockets(sockstat []byte) bool {
	used, tw := -1, -1
	sc := bufio.NewScanner(bytes.NewReader(sockstat))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "sockets:" && f[1] == "used":
			used, _ = strconv.Atoi(f[2])
		case len(f) > 0 && f[0] == "TCP:":
			for i := 1; i+1 < len(f); i += 2 {
				if f[i] == "tw" {
					tw, _ = strconv.Atoi(f[i+1])
				}
			}
		}
	}
	return used == 0 && tw == 0
}

// noneSent reports whether no link in a /proc/net/dev sent anything: all
// its transmit counters are zero. A sandbox's loopback traffic is counted
// there, and so is any answer of its kernel to what reached it (a TCP
// reset, an ARP reply, an ICMP error). What it received unanswered is
// not: the bridge floods every port with broadcasts (the host's ARP
// requests) and with frames for a sandbox whose port it has not learned
// or has forgotten, which sandboxes' eth0 count and drop; they say nothing
// of the sandbox, and every sandbox on the bridge sees them as they come.
func noneSent(dev []byte) bool {
	links := 0
	sc := bufio.NewScanner(bytes.NewReader(dev))
	for sc.Scan() {
		name, counters, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.Contains(name, "|") {
			continue // the two header lines
		}
		f := strings.Fields(counters)
		if len(f) != 16 {
			return false
		}
		links++
		for _, c := range f[8:] {
			if c != "0" {
				return false
			}
		}
	}
	return links > 0
}
