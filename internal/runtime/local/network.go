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
// (runtime-spec LinuxNamespace{Type: network, Path: ...}). gVisor needs
// that: the Sentry reads its namespace's interfaces once when it boots, so
// eth0 must be there already. crun and runc make the namespace themselves
// and get their veth once the container exists (setupNetwork), which
// measured no slower (see BenchmarkCreateNetwork) and needs no namespace
// handle of ours.
func (r *Runtime) netnsFirst() bool {
	return r.networked() && (r.cfg.Runtime == "runsc" || netnsFirstForAll)
}

// netnsFirstForAll makes every OCI runtime join a namespace made first
// (for benchmarks comparing both orders).
var netnsFirstForAll = false

// sandboxNetns is a network namespace made for one sandbox before its
// container, held by an open file of ours: no bind mount, so nothing can
// outlive us. The OCI runtime joins it through Path while we hold it;
// after that the container's processes keep it alive, and once Close ran
// and they are gone the kernel frees it, deleting the veth inside with it.
type sandboxNetns struct {
	f    *os.File
	path string
}

// prepareNetwork makes the network namespace of a sandbox and sets up its
// network in it when netnsFirst; otherwise it returns nil (a nil
// *sandboxNetns is valid and does nothing). Create tears the network down
// by id on any later failure; the caller closes the namespace once the
// container runs (or failed to).
func (r *Runtime) prepareNetwork(ctx context.Context, id, dir string, p sandbox.NetworkPolicy) (*sandboxNetns, error) {
	if !r.netnsFirst() {
		return nil, nil
	}
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

// setupNetwork gives the container whose PID 1 is pid its network, and
// its name in /etc/hosts the sandbox's address. It runs after the OCI
// runtime made the namespace and before the agent runs anything of the
// user's.
func (r *Runtime) setupNetwork(ctx context.Context, id, dir string, pid int, p sandbox.NetworkPolicy) error {
	if !r.networked() || r.netnsFirst() {
		return nil
	}
	att, err := r.cfg.Network.Setup(ctx, id, fmt.Sprintf("/proc/%d/ns/net", pid), NetworkPolicy(p))
	if err == nil {
		err = writeHosts(dir, id, att.Addr)
	}
	if err != nil {
		return fmt.Errorf("network of sandbox %q: %w", id, err)
	}
	return nil
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
