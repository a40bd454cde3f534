package rowcodec

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

func TestTimeRoundTrip(t *testing.T) {
	for _, tm := range []time.Time{
		{},
		time.Date(2026, 1, 2, 3, 4, 5, 999999999, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600)),
	} {
		got := Time(Nanos(tm))
		if !got.Equal(tm) || (!got.IsZero() && got.Location() != time.UTC) {
			t.Errorf("Time(Nanos(%v)) = %v", tm, got)
		}
	}
}

func TestPageTokenRoundTrip(t *testing.T) {
	for _, c := range []Cursor{{1, "a"}, {-5, "id:with:colons"}, {1<<62 + 3, "ünï"}} {
		got, err := DecodePageToken(EncodePageToken(c))
		if err != nil || got != c {
			t.Errorf("round trip of %+v = %+v, %v", c, got, err)
		}
	}
	for _, bad := range []string{"x", "djE6MTo", "djI6MTph", "djE6eDph"} { // "v1:1:", "v2:1:a", "v1:x:a"
		if _, err := DecodePageToken(bad); !errors.Is(err, sandbox.ErrInvalidArgument) {
			t.Errorf("DecodePageToken(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestCheckFilterDefaults(t *testing.T) {
	q, err := CheckFilter(store.SandboxFilter{Tags: []string{"a", "b", "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if q.Limit != DefaultPageSize || !slices.Equal(q.Tags, []string{"a", "b"}) || !slices.Equal(q.States, ActiveStates()) || q.After != nil {
		t.Fatalf("defaults: %+v", q)
	}
	q, _ = CheckFilter(store.SandboxFilter{IncludeTerminal: true, PageSize: 7})
	if len(q.States) != len(sandbox.States) || q.Limit != 7 {
		t.Fatalf("with terminal: %+v", q)
	}
	q, _ = CheckFilter(store.SandboxFilter{States: []sandbox.State{sandbox.StateFailed, sandbox.StateFailed}, PageSize: MaxPageSize + 1})
	if !slices.Equal(q.States, []string{"FAILED"}) || q.Limit != MaxPageSize {
		t.Fatalf("explicit states: %+v", q)
	}
}

func TestPage(t *testing.T) {
	rows := []*sandbox.Sandbox{{ID: "c", CreatedAt: time.Unix(3, 0)}, {ID: "b", CreatedAt: time.Unix(2, 0)}, {ID: "a", CreatedAt: time.Unix(1, 0)}}
	page, next := Page(Query{Limit: 2}, rows)
	if len(page) != 2 || next == "" {
		t.Fatalf("Page = %d rows, %q", len(page), next)
	}
	c, err := DecodePageToken(next)
	if err != nil || c != (Cursor{CreatedAt: 2e9, ID: "b"}) {
		t.Fatalf("next cursor %+v, %v", c, err)
	}
	if page, next = Page(Query{Limit: 3}, rows); len(page) != 3 || next != "" {
		t.Fatalf("last page = %d rows, %q", len(page), next)
	}
}

func TestDecodeCorruptRow(t *testing.T) {
	var sb sandbox.Sandbox
	err := DecodeSandbox(SandboxJSON{Spec: []byte("{not json")}, &sb)
	if !errors.Is(err, sandbox.ErrInternal) {
		t.Fatalf("corrupt spec: %v", err)
	}
}
