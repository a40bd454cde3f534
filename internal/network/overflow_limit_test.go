package network

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TestOverBridgeLimit attaches 1030 sandboxes with the kernel's real limit
// of 1023 ports a bridge: the main bridge takes 958 of them (65 ports are
// kept for trunks in a /16), overflow bridge 1 the rest. Then it fills the
// main bridge with links of its own to show where the kernel stops, and
// that Setup moves on to an overflow bridge when the main one is full
// although its own count says otherwise.
func TestOverBridgeLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("1030 namespaces")
	}
	w := newWorld(t)
	ctx := context.Background()
	const total = 1030
	ob1 := overflowName(testBridge, 1)
	var nss []netns.NsHandle
	closeAll := func() { // the kernel deletes their veth pairs in batches
		for _, ns := range nss {
			ns.Close()
		}
		nss = nil
	}
	t.Cleanup(closeAll)
	path := func(ns netns.NsHandle) string { return fmt.Sprintf("/proc/self/fd/%d", int(ns)) }
	on := map[string]int{}
	for i := range total {
		ns := anonNS(t)
		nss = append(nss, ns)
		a, err := w.mgr.Setup(ctx, fmt.Sprint("big-", i), path(ns), Policy{})
		if err != nil {
			t.Fatalf("Setup %d: %v", i, err)
		}
		on[a.Bridge]++
	}
	if want := capacity(testSubnet, 0); on[testBridge] != want || on[ob1] != total-want || len(on) != 2 {
		t.Fatalf("sandboxes per bridge: %v, want %d on %s, the rest on %s", on, want, testBridge, ob1)
	}
	reach(t, "a sandbox on overflow 1", path(nss[total-1]), ap(publicAddr, 80))
	reach(t, "a sandbox on the main bridge", path(nss[0]), ap(publicAddr, 80))

	// Links of someone else take the main bridge's free ports until the
	// kernel refuses one: at 1023.
	fill := anonNS(t) // their peers live here; closing it deletes them
	defer fill.Close()
	main, err := netlink.LinkByName(testBridge)
	if err != nil {
		t.Fatal(err)
	}
	fillers := 0
	addFiller := func() error {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = fmt.Sprintf("sbxtfill%d", fillers)
		attrs.MasterIndex = main.Attrs().Index
		fillers++
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0" + fmt.Sprint(fillers), PeerNamespace: netlink.NsFd(int(fill))})
	}
	for err == nil {
		err = addFiller()
	}
	if !errors.Is(err, unix.EXFULL) {
		t.Fatalf("filling the bridge: %v", err)
	}
	if n := countPorts(t, main); n != 1023 {
		t.Fatalf("the kernel refused a port at %d ports, want 1023", n)
	}
	// One of our sandboxes on main goes; another link takes its port.
	if err := w.mgr.Teardown(ctx, "big-0"); err != nil {
		t.Fatal(err)
	}
	if err := w.mgr.settle(); err != nil {
		t.Fatal(err)
	}
	if err := addFiller(); err != nil {
		t.Fatal(err)
	}
	ns := anonNS(t)
	nss = append(nss, ns)
	a, err := w.mgr.Setup(ctx, "big-extra", path(ns), Policy{})
	if err != nil || a.Bridge != ob1 {
		t.Fatalf("Setup with the main bridge full of others' links: %+v, %v", a, err)
	}
	reach(t, "a sandbox moved to overflow 1", path(ns), ap(publicAddr, 80))

	closeAll()
	for i := 1; i < total; i++ {
		if err := w.mgr.Teardown(ctx, fmt.Sprint("big-", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.mgr.Teardown(ctx, "big-extra"); err != nil {
		t.Fatal(err)
	}
	if err := w.mgr.settle(); err != nil {
		t.Fatal(err)
	}
}

// countPorts counts the ports of bridge br.
func countPorts(t *testing.T, br netlink.Link) int {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			n++
		}
	}
	return n
}

// BenchmarkSetupTeardownOverflow is BenchmarkSetupTeardown for sandboxes
// that land on an overflow bridge (the main one is full).
func BenchmarkSetupTeardownOverflow(b *testing.B) {
	old := bridgePorts
	bridgePorts = 20 // main: 11 sandboxes; overflow: 19 each, room for veths being deleted
	b.Cleanup(func() { bridgePorts = old })
	w := newWorld(b)
	ctx := context.Background()
	for i := range capacity(testSubnet, 0) {
		ns := anonNS(b)
		b.Cleanup(func() { ns.Close() })
		if _, err := w.mgr.Setup(ctx, fmt.Sprint("main-", i), fmt.Sprintf("/proc/self/fd/%d", int(ns)), Policy{}); err != nil {
			b.Fatal(err)
		}
	}
	benchSetupTeardown(b, w, func(a *Attachment) {
		if a.Bridge == testBridge {
			b.Fatalf("sandbox on the main bridge")
		}
	})
}
