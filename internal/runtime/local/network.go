package local

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/network"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// resolvConfFile is the generated resolv.conf in a sandbox's dir.
const resolvConfFile = "resolv.conf"

// NetworkPolicy converts the domain's policy into internal/network's.
func NetworkPolicy(p sandbox.NetworkPolicy) network.Policy {
	out := network.Policy{
		DenyEgress:  p.DenyEgress,
		DenyDNS:     p.DenyDNS,
		AllowNames:  p.AllowNames,
		DenyIngress: p.DenyIngress,
		PeerGroup:   p.PeerGroup,
	}
	for _, r := range p.AllowCIDRs {
		out.AllowCIDRs = append(out.AllowCIDRs, network.CIDRRule{CIDR: r.CIDR, Ports: r.Ports})
	}
	return out
}

// networked reports whether sandboxes get a network beyond loopback.
func (r *Runtime) networked() bool { return r.cfg.Network != nil }

// netnsFirst reports whether a sandbox's network namespace is made, and
// its network set up, before the OCI runtime runs, which then joins it
// (runtime-spec LinuxNamespace{Type: network, Path: ...}): whenever
// sandboxes have a network. gVisor needs that (the Sentry reads its
// namespace's interfaces once when it boots, so eth0 must be there
// already), and for crun and runc it lets a namespace outlive its sandbox,
// to be reused (netpool.go). Such a namespace belongs to the host's user
// namespace, not the sandbox's: sandbox root has no capability in it (see
// newNetns for the two sysctls that make up for CAP_NET_BIND_SERVICE and
// ping), cannot mount sysfs for it (the runtime does: sysfsMount), and no
// sandbox can change it.
func (r *Runtime) netnsFirst() bool { return r.networked() }

// sandboxNetns is a network namespace made for sandboxes before their
// containers, held by an open file of ours for as long as its sandbox
// lives and while it is kept for the next (netpool.go): no bind mount, so
// nothing can outlive us. The OCI runtime joins it through path. Once
// Close ran and no process is in it, the kernel frees it, deleting the
// veth inside with it.
type sandboxNetns struct {
	f    *os.File
	path string
}

// prepareNetwork gives a sandbox its network namespace with its network
// set up in it when netnsFirst: a kept one (netpool.go), or a new one;
// otherwise it returns nil (a nil *sandboxNetns is valid and does
// nothing). The namespace is the sandbox's until releaseNetns.
func (r *Runtime) prepareNetwork(ctx context.Context, id, dir string, p sandbox.NetworkPolicy) (*sandboxNetns, error) {
	if !r.netnsFirst() {
		return nil, nil
	}
	// A policy that cannot be had costs no namespace, kept or new.
	if err := r.cfg.Network.CheckRequest(id, NetworkPolicy(p)); err != nil {
		return nil, err
	}
	if r.reusesNetns() {
		if ns, att := r.takeNetns(ctx, id, p); ns != nil {
			if err := writeHosts(dir, id, att.Addr); err != nil {
				ns.Close()
				return nil, fmt.Errorf("network of sandbox %q: %w", id, err)
			}
			return ns, nil
		}
	}
	return r.newSandboxNetns(ctx, id, dir, p)
}

// newSandboxNetns makes a network namespace and sets up sandbox id's
// network in it.
func (r *Runtime) newSandboxNetns(ctx context.Context, id, dir string, p sandbox.NetworkPolicy) (*sandboxNetns, error) {
	f, err := newNetns()
	if err != nil {
		return nil, sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonNetworkSetup, "network namespace of sandbox %q: %w", id, err)
	}
	ns := &sandboxNetns{f: f, path: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd())}
	att, err := r.cfg.Network.Setup(ctx, id, ns.path, NetworkPolicy(p))
	if err == nil {
		err = writeHosts(dir, id, att.Addr)
	}
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("network of sandbox %q: %w", id, err)
	}
	r.netPool.made.Add(1)
	return ns, nil
}

// apply makes spec's network namespace the one made first.
func (n *sandboxNetns) apply(spec *specs.Spec) {
	if n == nil || spec.Linux == nil {
		return
	}
	for i := range spec.Linux.Namespaces {
		if spec.Linux.Namespaces[i].Type == specs.NetworkNamespace {
			spec.Linux.Namespaces[i].Path = n.path
		}
	}
}

// Close drops our hold on the namespace.
func (n *sandboxNetns) Close() {
	if n != nil && n.f != nil {
		n.f.Close()
		n.f = nil
	}
}

// newNetns returns a new network namespace (its nsfs file), made on a
// locked thread that then returns to the namespace it was in. Should the
// return fail, the thread stays locked, so Go ends it with the goroutine
// rather than run other code in the wrong namespace.
func newNetns() (*os.File, error) {
	goruntime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		goruntime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		goruntime.UnlockOSThread()
		return nil, fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
	}
	ns, nsErr := os.Open("/proc/thread-self/ns/net")
	if nsErr == nil {
		nsErr = sandboxSysctls()
		if nsErr != nil {
			ns.Close()
		}
	}
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		if nsErr == nil {
			ns.Close()
		}
		return nil, fmt.Errorf("return to the server's network namespace: %w", err)
	}
	goruntime.UnlockOSThread()
	if nsErr != nil {
		return nil, nsErr
	}
	return ns, nil
}

// sysfsDir is the mount point, in a sandbox's dir, of the sysfs mounted for
// its network namespace.
const sysfsDir = "sys"

// sysfsMount mounts, read-only, a sysfs of the network namespace ns (whose
// /sys/class/net lists that namespace's links) at target, for the OCI
// runtime to bind at the sandbox's /sys. Sandbox root cannot mount it: the
// namespace is not its user namespace's (netnsFirst). It runs on a spawner
// thread (spawnns.go), so the mount is in the sandbox's mount namespace
// only.
func sysfsMount(ns *os.File, target string) error {
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter the sandbox's network namespace: %w", err)
	}
	err := unix.Mount("sysfs", target, "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	if err != nil {
		err = fmt.Errorf("mount sysfs: %w", err)
	}
	// The OCI runtime starts in the server's namespace (should this
	// fail, so does the spawner's own return, which then ends it).
	if berr := unix.Setns(int(spawners.homeNet.Fd()), unix.CLONE_NEWNET); berr != nil && err == nil {
		err = fmt.Errorf("return to the server's network namespace: %w", berr)
	}
	return err
}

// sandboxSysctls sets, in the network namespace of the calling thread,
// what the sandbox cannot: it has no capability in a namespace that is not
// its user namespace's (netnsFirst), so CAP_NET_BIND_SERVICE, which it
// holds, counts for nothing there. Every port may be bound, as containerd
// allows in its containers, and every group may open ICMP echo ("ping")
// sockets, which need no CAP_NET_RAW (which no sandbox has: defaultCaps).
func sandboxSysctls() error {
	for _, s := range []struct{ name, value string }{
		{"net/ipv4/ip_unprivileged_port_start", "0"},
		{"net/ipv4/ping_group_range", "0 2147483647"},
	} {
		if err := os.WriteFile("/proc/sys/"+s.name, []byte(s.value+"\n"), 0o644); err != nil {
			return fmt.Errorf("set %s in a sandbox's network namespace: %w", s.name, err)
		}
	}
	return nil
}

// networkMounts writes the sandbox's resolv.conf into dir and returns the
// bind mount that puts it at /etc/resolv.conf, or nothing when DNS is denied
// or there is no resolver to name (the image's own file then stays).
func (r *Runtime) networkMounts(dir string, p sandbox.NetworkPolicy) ([]specs.Mount, error) {
	if !r.networked() || p.DenyDNS {
		return nil, nil
	}
	servers := r.cfg.Network.Config().DNS
	if len(servers) == 0 {
		return nil, nil
	}
	var b strings.Builder
	b.WriteString("# written by sbx\n")
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	b.WriteString("options ndots:1\n")
	path := filepath.Join(dir, resolvConfFile)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return nil, fmt.Errorf("write resolv.conf: %w", err)
	}
	return []specs.Mount{{Destination: "/etc/resolv.conf", Type: "bind", Source: path,
		Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}}}, nil
}

// teardownNetwork removes a sandbox's network; unknown ids are fine.
func (r *Runtime) teardownNetwork(ctx context.Context, id string) error {
	if r.cfg.Network == nil {
		return nil
	}
	return r.cfg.Network.Teardown(ctx, id)
}

// recoverNetworks tears down the networks of sandboxes this runtime no
// longer has, or whose container is gone; the manager re-found the rest.
func (r *Runtime) recoverNetworks(ctx context.Context) error {
	if r.cfg.Network == nil {
		return nil
	}
	atts, err := r.cfg.Network.List()
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range atts {
		r.mu.Lock()
		b := r.boxes[a.SandboxID]
		r.mu.Unlock()
		if b != nil {
			if rec, _ := b.snapshot(); rec.Phase == phaseCreated && a.Linked {
				continue
			}
		}
		if err := r.cfg.Network.Teardown(ctx, a.SandboxID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Address returns the IPv4 address of a sandbox's network, if it has one.
func (r *Runtime) Address(id string) (netip.Addr, bool) {
	if r.cfg.Network == nil {
		return netip.Addr{}, false
	}
	a, err := r.cfg.Network.Get(id)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Addr, true
}
