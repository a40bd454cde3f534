package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// TestAllowResolved: addresses a resolver returned for a sandbox with
// AllowNames open to it alone, on every port, until they time out; what a
// sandbox may never reach stays closed whatever DNS said.
func TestAllowResolved(t *testing.T) {
	w := newWorld(t)
	w.mgr.Close()
	m, err := New(Config{Bridge: testBridge, Table: testTable, Subnet: testSubnet, StateDir: w.stateDir, NameResolver: true,
		HostBlock: []CIDRRule{{CIDR: "203.0.113.0/24", Ports: []int{443}}}})
	if err != nil {
		t.Fatal(err)
	}
	w.mgr = m
	a, ns := w.sandbox("sb-names", Policy{AllowNames: []string{"*.example.com"}})
	peer, otherNS := w.sandbox("sb-names-2", Policy{AllowNames: []string{"*.example.com"}})

	if id, p, ok := m.Lookup(a.Addr); !ok || id != "sb-names" || len(p.AllowNames) != 1 {
		t.Fatalf("Lookup(%s) = %q, %+v, %v", a.Addr, id, p, ok)
	}
	if _, _, ok := m.Lookup(netip.MustParseAddr("198.51.100.1")); ok {
		t.Fatal("Lookup found a sandbox for an unknown address")
	}

	blocked(t, "before resolving", ns, ap(publicAddr, 80))
	hostile := []netip.Addr{metadataAddr, privateAddr, hostAddr, a.Gateway, peer.Addr, allowedNet, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("2001:db8::1")}
	if err := m.AllowResolved("sb-names", append(hostile, publicAddr), time.Minute); err != nil {
		t.Fatal(err)
	}
	reach(t, "resolved", ns, ap(publicAddr, 80))
	reach(t, "resolved, every port", ns, ap(publicAddr, 8080))
	blocked(t, "resolved for another sandbox only", otherNS, ap(publicAddr, 80))
	blocked(t, "metadata resolved", ns, ap(metadataAddr, 80))
	blocked(t, "private resolved", ns, ap(privateAddr, 80))
	blocked(t, "host_block resolved", ns, ap(allowedNet, 8080))
	blocked(t, "host address resolved", ns, ap(hostAddr, w.hostPort))
	blocked(t, "gateway resolved", ns, ap(a.Gateway, w.hostPort))
	blocked(t, "peer resolved", ns, ap(peer.Addr, 80))
	if got := setElements(t, "sb-names"); len(got) != 1 || got[0] != publicAddr {
		t.Errorf("set of sb-names = %v, want only %s", got, publicAddr)
	}

	// Errors: unknown sandbox, sandbox without AllowNames.
	if err := m.AllowResolved("nope", []netip.Addr{publicAddr}, time.Minute); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("unknown sandbox: %v", err)
	}
	w.sandbox("sb-plain", Policy{})
	if err := m.AllowResolved("sb-plain", []netip.Addr{publicAddr}, time.Minute); !errors.Is(err, sandbox.ErrFailedPrecondition) {
		t.Errorf("sandbox without allow_names: %v", err)
	}

	// Expiry: a short TTL closes again (polled; no timing is asserted).
	_, shortNS := w.sandbox("sb-short", Policy{AllowNames: []string{"short.example.com"}})
	if err := m.AllowResolved("sb-short", []netip.Addr{publicAddr}, time.Second); err != nil {
		t.Fatal(err)
	}
	reach(t, "short TTL, before expiry", shortNS, ap(publicAddr, 80))
	waitBlocked(t, shortNS, ap(publicAddr, 80))
	// ... and opens again when resolved again.
	if err := m.AllowResolved("sb-short", []netip.Addr{publicAddr}, time.Minute); err != nil {
		t.Fatal(err)
	}
	reach(t, "resolved again", shortNS, ap(publicAddr, 80))

	// Bound: at most MaxResolvedPerSandbox live entries.
	var n int
	for err == nil && n <= MaxResolvedPerSandbox {
		batch := make([]netip.Addr, 0, 64)
		for range 64 {
			batch = append(batch, netip.AddrFrom4([4]byte{198, 18, byte(n >> 8), byte(n)}))
			n++
		}
		err = m.AllowResolved("sb-names-2", batch, time.Minute)
	}
	if !errors.Is(err, sandbox.ErrResourceExhausted) || len(setElements(t, "sb-names-2")) > MaxResolvedPerSandbox {
		t.Errorf("after %d addresses: %v, %d elements", n, err, len(setElements(t, "sb-names-2")))
	}

	// A restart starts the sets empty; clients resolve again.
	m.Close()
	w.mgr = w.newManager()
	blocked(t, "after a restart", ns, ap(publicAddr, 80))
}

// TestAllowNamesNeedsResolver: without sbx's resolver, a name allow-list
// is rejected at Setup instead of silently blocking everything.
func TestAllowNamesNeedsResolver(t *testing.T) {
	w := newWorld(t)
	w.mgr.Close()
	m, err := New(Config{Bridge: testBridge, Table: testTable, Subnet: testSubnet, StateDir: w.stateDir})
	if err != nil {
		t.Fatal(err)
	}
	w.mgr = m
	_, err = m.Setup(context.Background(), "sb-x", w.newSandboxNS(), Policy{AllowNames: []string{"example.com"}})
	if !errors.Is(err, sandbox.ErrFailedPrecondition) || sandbox.ReasonOf(err) != sandbox.ReasonNameResolverOff {
		t.Fatalf("Setup = %v, want FailedPrecondition %s", err, sandbox.ReasonNameResolverOff)
	}
}

func waitBlocked(t *testing.T, ns string, addr netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := get(ns, addr); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still reachable 30 s after its entry should have expired", addr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// setElements lists the live entries of a sandbox's resolved set.
func setElements(t *testing.T, id string) []netip.Addr {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tb := &nftables.Table{Name: testTable, Family: nftables.TableFamilyINet}
	s, err := c.GetSetByName(tb, resolvedSet(key(id)))
	if err != nil {
		t.Fatal(fmt.Errorf("set of %s: %w", id, err))
	}
	els, err := c.GetSetElements(s)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, e := range els {
		a, _ := netip.AddrFromSlice(e.Key)
		out = append(out, a)
	}
	return out
}

// BenchmarkAllowResolved measures one firewall update for a resolved
// address (the add, delete, add transaction), as when an answer's address
// is new or its entry needs a longer timeout; a repeated answer whose entry
// has the TTL left costs no nftables work and is not measured here.
func BenchmarkAllowResolved(b *testing.B) {
	w := newWorld(b)
	w.sandbox("sb-bench-names", Policy{AllowNames: []string{"*.example.com"}})
	addrs := []netip.Addr{publicAddr}
	for b.Loop() {
		w.mgr.res.resMu.Lock()
		delete(w.mgr.res.entries, "sb-bench-names") // forget it, so the next call updates
		w.mgr.res.resMu.Unlock()
		if err := w.mgr.AllowResolved("sb-bench-names", addrs, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}
