package local

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

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

// networked reports whether sandboxes get a network beyond loopback. gVisor
// (runsc) reads its namespace's interfaces when it boots, before Setup could
// add one, so its sandboxes keep loopback only for now.
func (r *Runtime) networked() bool {
	return r.cfg.Network != nil && r.cfg.Runtime != "runsc"
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

// setupNetwork gives the container whose PID 1 is pid its network. It runs
// after the OCI runtime made the namespace and before the agent runs
// anything of the user's.
func (r *Runtime) setupNetwork(ctx context.Context, id string, pid int, p sandbox.NetworkPolicy) error {
	if !r.networked() {
		return nil
	}
	_, err := r.cfg.Network.Setup(ctx, id, fmt.Sprintf("/proc/%d/ns/net", pid), NetworkPolicy(p))
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

// HostNameservers returns the IPv4 nameservers of the host's resolv.conf
// that a sandbox could reach (not loopback), for network.Config.DNS until
// sbx runs its own resolver.
func HostNameservers(resolvConf string) []netip.Addr {
	data, err := os.ReadFile(resolvConf)
	if err != nil || len(data) > 1<<20 {
		return nil
	}
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || !a.Is4() || a.IsLoopback() || a.IsUnspecified() {
			continue
		}
		out = append(out, a)
		if len(out) == 3 {
			break
		}
	}
	return out
}
