package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

func testSandboxRoundTrip(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	want := fullSandbox("t1", "sb-full", 1)
	mustCreate(t, s, want)
	want = fullSandbox("t1", "sb-full", 1) // in case the store kept and changed the pointer

	same(t, "GetSandbox(tenant)", mustGet(t, s, "t1", "sb-full"), want)
	same(t, "GetSandbox(any tenant)", mustGet(t, s, "", "sb-full"), want)
	got, err := s.GetSandboxByRequestID(ctx(t), "t1", "req-sb-full")
	if err != nil {
		t.Fatalf("GetSandboxByRequestID: %v", err)
	}
	same(t, "GetSandboxByRequestID", got, want)

	sbs, _, err := s.ListSandboxes(ctx(t), store.SandboxFilter{TenantID: "t1", IncludeTerminal: true})
	if err != nil || len(sbs) != 1 {
		t.Fatalf("ListSandboxes = %d records, %v; want 1", len(sbs), err)
	}
	same(t, "ListSandboxes record", sbs[0], want)

	for _, tm := range []time.Time{got.CreatedAt, got.StartedAt, got.EndedAt, got.ExpiresAt, got.Exit.At, got.Transitions[0].At} {
		if tm.Location() != time.UTC {
			t.Fatalf("time %v is in %v, want UTC", tm, tm.Location())
		}
	}
}

func testSandboxMinimalRoundTrip(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	want := &sandbox.Sandbox{ID: "sb-min", TenantID: "t1", State: sandbox.StatePending, CreatedAt: at(0)}
	mustCreate(t, s, want)
	got := mustGet(t, s, "t1", "sb-min")
	same(t, "minimal record", got, &sandbox.Sandbox{ID: "sb-min", TenantID: "t1", State: sandbox.StatePending, CreatedAt: at(0)})
	if got.Exit != nil || !got.StartedAt.IsZero() || !got.EndedAt.IsZero() {
		t.Fatalf("unset fields came back set: %+v", got)
	}
}

func testCreateDuplicate(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	first := newSandbox("t1", "sb-1", 1, sandbox.StateRunning, "x")
	first.RequestID = "req-1"
	mustCreate(t, s, first)

	dupID := newSandbox("t2", "sb-1", 2, sandbox.StatePending, "y")
	wantErr(t, "duplicate id", s.CreateSandbox(ctx(t), dupID), sandbox.ErrAlreadyExists, sandbox.ReasonSandboxExists)

	dupReq := newSandbox("t1", "sb-2", 3, sandbox.StatePending, "z")
	dupReq.RequestID = "req-1"
	wantErr(t, "duplicate request id", s.CreateSandbox(ctx(t), dupReq), sandbox.ErrAlreadyExists, sandbox.ReasonRequestIDExists)
	// The failed create left nothing behind, not even its tags.
	wantErr(t, "get after failed create", func() error { _, err := s.GetSandbox(ctx(t), "", "sb-2"); return err }(), sandbox.ErrNotFound, sandbox.ReasonSandboxNotFound)
	if got := listAll(t, s, store.SandboxFilter{Tags: []string{"z"}}); len(got) != 0 {
		t.Fatalf("tag of a failed create is listed: %v", got)
	}
	same(t, "first record after duplicates", mustGet(t, s, "t1", "sb-1"), newSandboxWithReq(first))

	// The same request id is fine for another tenant, and an empty one is never a duplicate.
	other := newSandbox("t2", "sb-3", 4, sandbox.StatePending)
	other.RequestID = "req-1"
	mustCreate(t, s, other, newSandbox("t1", "sb-4", 5, sandbox.StatePending), newSandbox("t1", "sb-5", 6, sandbox.StatePending))
	got, err := s.GetSandboxByRequestID(ctx(t), "t2", "req-1")
	if err != nil || got.ID != "sb-3" {
		t.Fatalf("GetSandboxByRequestID(t2, req-1) = %v, %v; want sb-3", got, err)
	}
}

func newSandboxWithReq(sb *sandbox.Sandbox) *sandbox.Sandbox {
	c := newSandbox(sb.TenantID, sb.ID, 1, sb.State, sb.Tags...)
	c.RequestID = sb.RequestID
	return c
}

func testNotFound(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	sb := newSandbox("t1", "sb-1", 1, sandbox.StateRunning)
	sb.RequestID = "req-1"
	mustCreate(t, s, sb)
	if err := s.CreateSession(ctx(t), &sandbox.Session{ID: "sess-1", TenantID: "t1", CreatedAt: at(1)}); err != nil {
		t.Fatal(err)
	}
	nf := func(what string, err error, reason string) {
		t.Helper()
		wantErr(t, what, err, sandbox.ErrNotFound, reason)
	}
	_, err := s.GetSandbox(ctx(t), "t1", "nope")
	nf("GetSandbox missing", err, sandbox.ReasonSandboxNotFound)
	_, err = s.GetSandbox(ctx(t), "t2", "sb-1")
	nf("GetSandbox of another tenant", err, sandbox.ReasonSandboxNotFound)
	_, err = s.GetSandboxByRequestID(ctx(t), "t2", "req-1")
	nf("GetSandboxByRequestID of another tenant", err, sandbox.ReasonSandboxNotFound)
	_, err = s.GetSandboxByRequestID(ctx(t), "t1", "")
	nf("GetSandboxByRequestID empty", err, sandbox.ReasonSandboxNotFound)
	_, err = s.UpdateSandbox(ctx(t), "nope", func(*sandbox.Sandbox) error { return nil })
	nf("UpdateSandbox missing", err, sandbox.ReasonSandboxNotFound)
	nf("DeleteSandbox missing", s.DeleteSandbox(ctx(t), "nope"), sandbox.ReasonSandboxNotFound)
	_, err = s.GetSession(ctx(t), "t1", "nope")
	nf("GetSession missing", err, sandbox.ReasonSessionNotFound)
	_, err = s.GetSession(ctx(t), "t2", "sess-1")
	nf("GetSession of another tenant", err, sandbox.ReasonSessionNotFound)
	_, err = s.UpdateSession(ctx(t), "nope", func(*sandbox.Session) error { return nil })
	nf("UpdateSession missing", err, sandbox.ReasonSessionNotFound)
	_, err = s.GetTenant(ctx(t), "nope")
	nf("GetTenant missing", err, sandbox.ReasonTenantNotFound)
	_, err = s.LookupAPIKey(ctx(t), "0000")
	nf("LookupAPIKey missing", err, sandbox.ReasonAPIKeyNotFound)
}

func testUpdate(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	mustCreate(t, s, newSandbox("t1", "sb-1", 1, sandbox.StateCreating, "old", "keep"))
	end := at(50)
	got, err := s.UpdateSandbox(ctx(t), "sb-1", func(sb *sandbox.Sandbox) error {
		sb.State = sandbox.StateCompleted
		sb.Reason = sandbox.ReasonMainExited
		sb.Exit = &sandbox.ExitStatus{Code: 0, At: end}
		sb.StartedAt = at(10)
		sb.EndedAt = end
		sb.Tags = []string{"keep", "new"}
		sb.Start.Env = map[string]string{"K": "V"}
		sb.Transitions = append(sb.Transitions, sandbox.Transition{State: sandbox.StateCompleted, Reason: sandbox.ReasonMainExited, At: end})
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateSandbox: %v", err)
	}
	stored := mustGet(t, s, "t1", "sb-1")
	same(t, "UpdateSandbox result vs stored record", got, stored)
	if stored.State != sandbox.StateCompleted || stored.Exit == nil || !stored.Exit.At.Equal(end) || len(stored.Transitions) != 2 || stored.Start.Env["K"] != "V" {
		t.Fatalf("update not stored: %s", dump(stored))
	}
	f := store.SandboxFilter{IncludeTerminal: true}
	for tag, want := range map[string]int{"old": 0, "keep": 1, "new": 1} {
		f.Tags = []string{tag}
		if n := len(listAll(t, s, f)); n != want {
			t.Errorf("after retagging, tag %q matches %d sandboxes, want %d", tag, n, want)
		}
	}
}

var errAbort = errors.New("abort this update")

func testUpdateAbort(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	mustCreate(t, s, newSandbox("t1", "sb-1", 1, sandbox.StateRunning, "a"))
	_, err := s.UpdateSandbox(ctx(t), "sb-1", func(sb *sandbox.Sandbox) error {
		sb.State = sandbox.StateFailed
		sb.Tags = []string{"b"}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("UpdateSandbox returned %v, want the function's error", err)
	}
	same(t, "record after an aborted update", mustGet(t, s, "t1", "sb-1"), newSandbox("t1", "sb-1", 1, sandbox.StateRunning, "a"))
	if got := listAll(t, s, store.SandboxFilter{Tags: []string{"b"}}); len(got) != 0 {
		t.Fatalf("tag of an aborted update is listed: %v", got)
	}
	// The store still takes writes after an aborted one.
	if _, err := s.UpdateSandbox(ctx(t), "sb-1", func(sb *sandbox.Sandbox) error { sb.Reason = "x"; return nil }); err != nil {
		t.Fatalf("UpdateSandbox after an abort: %v", err)
	}
}

func testUpdateImmutable(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	mustCreate(t, s, newSandbox("t1", "sb-1", 1, sandbox.StateRunning))
	_, err := s.UpdateSandbox(ctx(t), "sb-1", func(sb *sandbox.Sandbox) error { sb.TenantID = "t2"; return nil })
	if err == nil {
		t.Fatal("UpdateSandbox let the function move a sandbox to another tenant")
	}
	same(t, "record after a rejected update", mustGet(t, s, "t1", "sb-1"), newSandbox("t1", "sb-1", 1, sandbox.StateRunning))
}

func testUpdateConcurrent(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	mustCreate(t, s, newSandbox("t1", "sb-1", 1, sandbox.StateRunning))
	const updaters = 20
	var wg sync.WaitGroup
	errs := make(chan error, updaters)
	for i := range updaters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UpdateSandbox(ctx(t), "sb-1", func(sb *sandbox.Sandbox) error {
				sb.Transitions = append(sb.Transitions, sandbox.Transition{State: sandbox.StateRunning, Reason: fmt.Sprint("u", i), At: at(i)})
				return nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent UpdateSandbox: %v", err)
		}
	}
	got := mustGet(t, s, "t1", "sb-1")
	if len(got.Transitions) != updaters+1 {
		t.Fatalf("%d transitions after %d concurrent appends, want %d: updates were lost", len(got.Transitions), updaters, updaters+1)
	}
	for i := range updaters {
		if !slices.ContainsFunc(got.Transitions, func(tr sandbox.Transition) bool { return tr.Reason == fmt.Sprint("u", i) }) {
			t.Fatalf("transition of updater %d lost", i)
		}
	}
}

func testDelete(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	mustCreate(t, s, newSandbox("t1", "sb-1", 1, sandbox.StateRunning, "gone"), newSandbox("t1", "sb-2", 2, sandbox.StateRunning))
	if err := s.DeleteSandbox(ctx(t), "sb-1"); err != nil {
		t.Fatalf("DeleteSandbox: %v", err)
	}
	_, err := s.GetSandbox(ctx(t), "", "sb-1")
	wantErr(t, "GetSandbox after delete", err, sandbox.ErrNotFound, sandbox.ReasonSandboxNotFound)
	wantErr(t, "second DeleteSandbox", s.DeleteSandbox(ctx(t), "sb-1"), sandbox.ErrNotFound, sandbox.ReasonSandboxNotFound)
	same(t, "list after delete", listAll(t, s, store.SandboxFilter{}), []string{"sb-2"})
	// The id can be reused, and the old record's tags are gone with it.
	mustCreate(t, s, newSandbox("t1", "sb-1", 3, sandbox.StateRunning, "fresh"))
	if got := listAll(t, s, store.SandboxFilter{Tags: []string{"gone"}}); len(got) != 0 {
		t.Fatalf("a deleted record's tag still matches: %v", got)
	}
}

func testPurge(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	// newSandbox ends terminal records one second after creation.
	mustCreate(t, s,
		newSandbox("t1", "old-done", 1, sandbox.StateCompleted, "p"),
		newSandbox("t2", "old-failed", 2, sandbox.StateFailed),
		newSandbox("t1", "old-running", 3, sandbox.StateRunning),
		newSandbox("t1", "new-done", 100, sandbox.StateTerminated),
	)
	got, err := s.PurgeSandboxes(ctx(t), at(50))
	if err != nil {
		t.Fatalf("PurgeSandboxes: %v", err)
	}
	slices.Sort(got)
	same(t, "purged ids", got, []string{"old-done", "old-failed"})
	same(t, "records left", listAll(t, s, store.SandboxFilter{IncludeTerminal: true}), []string{"new-done", "old-running"})
	if got := listAll(t, s, store.SandboxFilter{Tags: []string{"p"}, IncludeTerminal: true}); len(got) != 0 {
		t.Fatalf("a purged record's tag still matches: %v", got)
	}
	if got, err := s.PurgeSandboxes(ctx(t), at(50)); err != nil || len(got) != 0 {
		t.Fatalf("second PurgeSandboxes = %v, %v; want nothing", got, err)
	}
}

// testUpdateEachField: an update that changes one field stores that field
// and keeps every other (a store may write only the columns that changed),
// and an update that changes nothing keeps the record.
func testUpdateEachField(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	mustCreate(t, s, newSandbox("t1", "sb-1", 1, sandbox.StateRunning, "a"))
	muts := []struct {
		name string
		fn   func(*sandbox.Sandbox)
	}{
		{"nothing", func(*sandbox.Sandbox) {}},
		{"state", func(sb *sandbox.Sandbox) { sb.State = sandbox.StateTerminating }},
		{"reason", func(sb *sandbox.Sandbox) { sb.Reason = "another reason" }},
		{"session", func(sb *sandbox.Sandbox) { sb.SessionID = "ss-2" }},
		{"request id", func(sb *sandbox.Sandbox) { sb.RequestID = "req-2" }},
		{"max lifetime", func(sb *sandbox.Sandbox) { sb.MaxLifetime = 7 * time.Minute }},
		{"created", func(sb *sandbox.Sandbox) { sb.CreatedAt = at(3) }},
		{"started", func(sb *sandbox.Sandbox) { sb.StartedAt = at(4) }},
		{"ended", func(sb *sandbox.Sandbox) { sb.EndedAt = at(5) }},
		{"expires", func(sb *sandbox.Sandbox) { sb.ExpiresAt = at(6) }},
		{"exit set", func(sb *sandbox.Sandbox) { sb.Exit = &sandbox.ExitStatus{Code: 3, At: at(7)} }},
		{"exit cleared", func(sb *sandbox.Sandbox) { sb.Exit = nil }},
		{"spec", func(sb *sandbox.Sandbox) { sb.Spec.Image = "busybox:other" }},
		{"start", func(sb *sandbox.Sandbox) { sb.Start.WorkingDir = "/srv" }},
		{"tags", func(sb *sandbox.Sandbox) { sb.Tags = []string{"b", "c"} }},
		{"transitions", func(sb *sandbox.Sandbox) {
			sb.Transitions = append(sb.Transitions, sandbox.Transition{State: sandbox.StateFailed, Reason: "x", At: at(8)})
		}},
	}
	for _, m := range muts {
		want := mustGet(t, s, "t1", "sb-1")
		m.fn(want)
		got, err := s.UpdateSandbox(ctx(t), "sb-1", func(sb *sandbox.Sandbox) error { m.fn(sb); return nil })
		if err != nil {
			t.Fatalf("update %s: %v", m.name, err)
		}
		same(t, "update of "+m.name+": result", got, want)
		same(t, "update of "+m.name+": stored", mustGet(t, s, "t1", "sb-1"), want)
	}
}
