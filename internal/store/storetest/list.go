package storetest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

func testListFilters(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	withSession := func(sb *sandbox.Sandbox, session string) *sandbox.Sandbox { sb.SessionID = session; return sb }
	mustCreate(t, s,
		withSession(newSandbox("t1", "a", 1, sandbox.StateRunning, "red", "big"), "s1"),
		withSession(newSandbox("t1", "b", 2, sandbox.StatePending, "red"), "s1"),
		withSession(newSandbox("t1", "c", 3, sandbox.StateCompleted, "red", "big"), "s2"),
		newSandbox("t1", "d", 4, sandbox.StateTerminating, "big"),
		newSandbox("t1", "e", 5, sandbox.StateFailed),
		newSandbox("t2", "f", 6, sandbox.StateRunning, "red", "big"),
		newSandbox("t2", "g", 7, sandbox.StateTerminated, "red"),
	)
	cases := []struct {
		name string
		f    store.SandboxFilter
		want []string
	}{
		{"tenant, active only", store.SandboxFilter{TenantID: "t1"}, []string{"d", "b", "a"}},
		{"tenant, with terminal", store.SandboxFilter{TenantID: "t1", IncludeTerminal: true}, []string{"e", "d", "c", "b", "a"}},
		{"every tenant", store.SandboxFilter{}, []string{"f", "d", "b", "a"}},
		{"every tenant, with terminal", store.SandboxFilter{IncludeTerminal: true}, []string{"g", "f", "e", "d", "c", "b", "a"}},
		{"other tenant", store.SandboxFilter{TenantID: "t2", IncludeTerminal: true}, []string{"g", "f"}},
		{"unknown tenant", store.SandboxFilter{TenantID: "t3", IncludeTerminal: true}, []string{}},
		{"session", store.SandboxFilter{TenantID: "t1", SessionID: "s1"}, []string{"b", "a"}},
		{"session, with terminal", store.SandboxFilter{TenantID: "t1", SessionID: "s2", IncludeTerminal: true}, []string{"c"}},
		{"session of another tenant", store.SandboxFilter{TenantID: "t2", SessionID: "s1", IncludeTerminal: true}, []string{}},
		{"one tag", store.SandboxFilter{TenantID: "t1", Tags: []string{"red"}, IncludeTerminal: true}, []string{"c", "b", "a"}},
		{"tags are ANDed", store.SandboxFilter{TenantID: "t1", Tags: []string{"red", "big"}, IncludeTerminal: true}, []string{"c", "a"}},
		{"repeated tag", store.SandboxFilter{TenantID: "t1", Tags: []string{"big", "big"}}, []string{"d", "a"}},
		{"unknown tag", store.SandboxFilter{Tags: []string{"red", "nope"}, IncludeTerminal: true}, []string{}},
		{"states", store.SandboxFilter{TenantID: "t1", States: []sandbox.State{sandbox.StateRunning, sandbox.StateFailed}}, []string{"e", "a"}},
		{"terminal state without IncludeTerminal", store.SandboxFilter{States: []sandbox.State{sandbox.StateTerminated}}, []string{"g"}},
		{"everything at once", store.SandboxFilter{TenantID: "t1", SessionID: "s1", Tags: []string{"red"}, States: []sandbox.State{sandbox.StatePending}}, []string{"b"}},
	}
	for _, c := range cases {
		got := listAll(t, s, c.f)
		if got == nil {
			got = []string{}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: ListSandboxes(%+v) = %v, want %v", c.name, c.f, got, c.want)
		}
	}
}

func testListPagination(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	var want []string
	for i := 1; i <= 23; i++ {
		sb := newSandbox("t1", fmt.Sprintf("sb-%02d", i), i, sandbox.StateRunning)
		mustCreate(t, s, sb)
		want = append(want, sb.ID)
	}
	// Records created at the same instant are ordered by id.
	tie1, tie2 := newSandbox("t1", "tie-a", 12, sandbox.StateRunning), newSandbox("t1", "tie-b", 12, sandbox.StateRunning)
	mustCreate(t, s, tie1, tie2)
	want = slices.Insert(want, 12, "tie-a", "tie-b")
	slices.Reverse(want) // newest first

	f := store.SandboxFilter{TenantID: "t1", PageSize: 10}
	var got []string
	for page := 0; ; page++ {
		sbs, next, err := s.ListSandboxes(ctx(t), f)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if len(sbs) > 10 {
			t.Fatalf("page %d has %d records, page size is 10", page, len(sbs))
		}
		got = append(got, ids(sbs)...)
		// Inserts between pages (newer ones, as in real use) must not shift
		// the pages that follow: no repeats, no gaps.
		mustCreate(t, s, newSandbox("t1", fmt.Sprintf("late-%d", page), 1000+page, sandbox.StateRunning))
		if next == "" {
			break
		}
		f.PageToken = next
		if page > 10 {
			t.Fatal("pagination does not end")
		}
	}
	same(t, "ids over all pages", got, want)

	// Page size 1 walks every record, late ones included.
	f = store.SandboxFilter{TenantID: "t1", States: []sandbox.State{sandbox.StateRunning}, PageSize: 1}
	if n := len(listAll(t, s, f)); n != len(want)+3 {
		t.Fatalf("page size 1 listed %d records, want %d", n, len(want)+3)
	}
}

func testListPageSize(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	const n = 105
	for i := range n {
		mustCreate(t, s, newSandbox("t1", fmt.Sprintf("sb-%03d", i), i, sandbox.StateRunning))
	}
	sbs, next, err := s.ListSandboxes(ctx(t), store.SandboxFilter{})
	if err != nil || len(sbs) != 100 || next == "" {
		t.Fatalf("default page: %d records, next %q, %v; want 100 records and a next page", len(sbs), next, err)
	}
	sbs, next, err = s.ListSandboxes(ctx(t), store.SandboxFilter{PageSize: 5000})
	if err != nil || len(sbs) != n || next != "" {
		t.Fatalf("page size over the maximum: %d records, next %q, %v; want all %d (size lowered to the maximum)", len(sbs), next, err, n)
	}
	_, _, err = s.ListSandboxes(ctx(t), store.SandboxFilter{PageSize: -1})
	wantErr(t, "negative page size", err, sandbox.ErrInvalidArgument, "")
}

func testListBadInput(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	mustCreate(t, s, newSandbox("t1", "sb-1", 1, sandbox.StateRunning))
	for _, tok := range []string{"garbage", "!!!", "djE6eDp5", string(make([]byte, 4096))} {
		_, _, err := s.ListSandboxes(ctx(t), store.SandboxFilter{PageToken: tok})
		wantErr(t, fmt.Sprintf("page token %.20q", tok), err, sandbox.ErrInvalidArgument, sandbox.ReasonInvalidPageToken)
	}
	_, _, err := s.ListSandboxes(ctx(t), store.SandboxFilter{States: []sandbox.State{"SLEEPING"}})
	wantErr(t, "unknown state", err, sandbox.ErrInvalidArgument, "")
	many := make([]string, 1000)
	for i := range many {
		many[i] = fmt.Sprint("tag", i)
	}
	_, _, err = s.ListSandboxes(ctx(t), store.SandboxFilter{Tags: many})
	wantErr(t, "1000 tags", err, sandbox.ErrInvalidArgument, "")
}

func testCountActive(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	count := func(tenant string, want int) {
		t.Helper()
		n, err := s.CountActive(ctx(t), tenant)
		if err != nil || n != want {
			t.Fatalf("CountActive(%q) = %d, %v; want %d", tenant, n, err, want)
		}
	}
	count("t1", 0)
	i := 0
	for _, st := range sandbox.States {
		i++
		mustCreate(t, s, newSandbox("t1", fmt.Sprint("t1-", i), i, st), newSandbox("t2", fmt.Sprint("t2-", i), i, st))
	}
	count("t1", 4) // PENDING, CREATING, RUNNING, TERMINATING
	count("t2", 4)
	count("t3", 0)
	if _, err := s.UpdateSandbox(ctx(t), "t1-3", func(sb *sandbox.Sandbox) error { sb.State = sandbox.StateTerminated; return nil }); err != nil {
		t.Fatal(err)
	}
	count("t1", 3)
}
