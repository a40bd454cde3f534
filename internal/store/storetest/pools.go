package storetest

import (
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

func poolSandbox(id string, n int) *store.PoolSandbox {
	return &store.PoolSandbox{
		ID:        id,
		Pool:      "docker.io/library/busybox:latest cpu=500",
		Spec:      sandbox.Spec{ID: id, Image: "busybox", Resources: sandbox.Resources{CPUMillis: 500}},
		CreatedAt: at(n),
	}
}

func listPool(t *testing.T, s store.Store) []*store.PoolSandbox {
	t.Helper()
	ps, err := s.ListPoolSandboxes(ctx(t))
	if err != nil {
		t.Fatalf("ListPoolSandboxes: %v", err)
	}
	return ps
}

func poolIDs(ps []*store.PoolSandbox) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.ID)
	}
	return out
}

// testPools checks idle pool sandboxes: round trip, order, duplicates,
// delete, that no tenant sees or counts them, and that a claim is atomic
// and happens once.
func testPools(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	same(t, "empty pool list", poolIDs(listPool(t, s)), []string{})
	for i, id := range []string{"sb-p2", "sb-p1", "sb-p3"} {
		if err := s.CreatePoolSandbox(ctx(t), poolSandbox(id, i+1)); err != nil {
			t.Fatalf("CreatePoolSandbox(%s): %v", id, err)
		}
	}
	wantErr(t, "duplicate pool sandbox", s.CreatePoolSandbox(ctx(t), poolSandbox("sb-p1", 9)), sandbox.ErrAlreadyExists, sandbox.ReasonSandboxExists)
	ps := listPool(t, s)
	same(t, "pool order (oldest first)", poolIDs(ps), []string{"sb-p2", "sb-p1", "sb-p3"})
	same(t, "pool sandbox round trip", ps[1], poolSandbox("sb-p1", 2))

	// Unclaimed pool sandboxes are no tenant's sandboxes.
	_, err := s.GetSandbox(ctx(t), "", "sb-p1")
	wantErr(t, "GetSandbox of a pool sandbox", err, sandbox.ErrNotFound, sandbox.ReasonSandboxNotFound)
	same(t, "list with only pool sandboxes", listAll(t, s, store.SandboxFilter{}), []string(nil))
	if n, err := s.CountActive(ctx(t), "t1"); err != nil || n != 0 {
		t.Fatalf("CountActive = %d, %v; want 0", n, err)
	}

	wantErr(t, "delete unknown pool sandbox", s.DeletePoolSandbox(ctx(t), "sb-nope"), sandbox.ErrNotFound, "")
	if err := s.DeletePoolSandbox(ctx(t), "sb-p3"); err != nil {
		t.Fatalf("DeletePoolSandbox: %v", err)
	}

	// A claim moves the pool sandbox to a tenant's record, once.
	sb := fullSandbox("t1", "sb-p1", 5)
	if err := s.ClaimPoolSandbox(ctx(t), sb); err != nil {
		t.Fatalf("ClaimPoolSandbox: %v", err)
	}
	same(t, "claimed record", mustGet(t, s, "t1", "sb-p1"), sb)
	same(t, "pool after claim", poolIDs(listPool(t, s)), []string{"sb-p2"})
	wantErr(t, "second claim", s.ClaimPoolSandbox(ctx(t), fullSandbox("t2", "sb-p1", 6)), sandbox.ErrNotFound, sandbox.ReasonSandboxNotFound)
	wantErr(t, "claim of a non-pool id", s.ClaimPoolSandbox(ctx(t), newSandbox("t1", "sb-x", 6, sandbox.StateCreating)), sandbox.ErrNotFound, "")
	if _, err := s.GetSandbox(ctx(t), "", "sb-x"); err == nil {
		t.Fatal("a failed claim inserted its record")
	}

	// A claim whose record cannot be inserted (request id taken) changes nothing.
	dup := fullSandbox("t1", "sb-p2", 7)
	dup.RequestID = sb.RequestID
	wantErr(t, "claim with a used request id", s.ClaimPoolSandbox(ctx(t), dup), sandbox.ErrAlreadyExists, sandbox.ReasonRequestIDExists)
	same(t, "pool after failed claim", poolIDs(listPool(t, s)), []string{"sb-p2"})

	// Pool sandboxes survive a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t)
	same(t, "pool after reopen", listPool(t, s), []*store.PoolSandbox{poolSandbox("sb-p2", 1)})
}
