// Package storetest is the one conformance suite for store.Store: every
// implementation runs Run in its tests, so they all keep the same contract
// (errors, atomic updates, list order and pagination, durability).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// Run runs the suite. open returns a Store on t's own database: an empty one
// on the first call within t, and the same database again on later calls
// within t (the suite closes the earlier Store first), which is how the
// suite checks that data survives a reopen. open should register the
// Store's Close with t.Cleanup; Close must be safe to call twice.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, func(*testing.T) store.Store)
	}{
		{"SandboxRoundTrip", testSandboxRoundTrip},
		{"SandboxMinimalRoundTrip", testSandboxMinimalRoundTrip},
		{"CreateDuplicate", testCreateDuplicate},
		{"NotFound", testNotFound},
		{"Update", testUpdate},
		{"UpdateEachField", testUpdateEachField},
		{"UpdateAbort", testUpdateAbort},
		{"UpdateImmutable", testUpdateImmutable},
		{"UpdateConcurrent", testUpdateConcurrent},
		{"ListFilters", testListFilters},
		{"ListPagination", testListPagination},
		{"ListPageSize", testListPageSize},
		{"ListBadInput", testListBadInput},
		{"CountActive", testCountActive},
		{"Delete", testDelete},
		{"Purge", testPurge},
		{"Sessions", testSessions},
		{"TenantsAndKeys", testTenantsAndKeys},
		{"TenantAdmin", testTenantAdmin},
		{"APIKeyAdmin", testAPIKeyAdmin},
		{"Reopen", testReopen},
		{"Pools", testPools},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// base is a time with every nanosecond digit set, so a store that drops
// precision or the time zone fails the round trips.
var base = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)

// at returns base plus n seconds and n nanoseconds.
func at(n int) time.Time { return base.Add(time.Duration(n)*time.Second + time.Duration(n)) }

// fullSandbox returns a record with every field set.
func fullSandbox(tenant, id string, n int) *sandbox.Sandbox {
	created := at(n)
	return &sandbox.Sandbox{
		ID:        id,
		TenantID:  tenant,
		SessionID: "sess-" + tenant,
		RequestID: "req-" + id,
		Spec: sandbox.Spec{
			ID:        id,
			Image:     "python:3.11",
			Resources: sandbox.Resources{CPUMillis: 1500, MemoryBytes: 512 << 20, Pids: 256},
			Network: sandbox.NetworkPolicy{
				AllowCIDRs:   []sandbox.CIDRRule{{CIDR: "203.0.113.0/24", Ports: []int{443, 8443}}},
				AllowNames:   []string{"example.com", "*.example.org"},
				DenyIngress:  true,
				SessionPeers: true,
				PeerGroup:    "session-abc",
			},
		},
		Ports: []sandbox.Port{{Port: 8080}, {Port: 9000, Public: true, Token: "abcdefghijklmnopqrstuvwxyz"}},
		Start: sandbox.StartSpec{
			Command:    []string{"python3", "-c", "print('hi \"there\"')"},
			Env:        map[string]string{"A": "1", "EMPTY": "", "UNICODE": "ünï"},
			WorkingDir: "/work",
			User:       "1000:1000",
			Files: []sandbox.File{
				{Path: "/etc/app.conf", Content: []byte("x=1\n"), Mode: 0o444},
				{Path: "/bin/blob", Content: []byte{0, 1, 2, 255}, Mode: 0o755},
			},
		},
		Tags:        []string{"team:a", "run:7", "team:a"},
		MaxLifetime: 90 * time.Second,
		State:       sandbox.StateFailed,
		Reason:      sandbox.ReasonMainExited,
		Exit:        &sandbox.ExitStatus{Code: 137, Signal: "SIGKILL", OOMKilled: true, TimedOut: true, At: created.Add(3 * time.Second)},
		CreatedAt:   created,
		StartedAt:   created.Add(time.Second),
		EndedAt:     created.Add(3 * time.Second),
		ExpiresAt:   created.Add(90 * time.Second),
		Transitions: []sandbox.Transition{
			{State: sandbox.StatePending, Reason: sandbox.ReasonRequested, At: created},
			{State: sandbox.StateRunning, Reason: sandbox.ReasonStarted, At: created.Add(time.Second)},
			{State: sandbox.StateFailed, Reason: sandbox.ReasonMainExited, At: created.Add(3 * time.Second)},
		},
	}
}

// newSandbox returns a plain record in state, created n steps after base.
func newSandbox(tenant, id string, n int, state sandbox.State, tags ...string) *sandbox.Sandbox {
	sb := &sandbox.Sandbox{
		ID:          id,
		TenantID:    tenant,
		Spec:        sandbox.Spec{ID: id, Image: "busybox"},
		Tags:        tags,
		State:       state,
		CreatedAt:   at(n),
		Transitions: []sandbox.Transition{{State: state, Reason: sandbox.ReasonRequested, At: at(n)}},
	}
	if state.Terminal() {
		sb.EndedAt = at(n).Add(time.Second)
	}
	return sb
}

func ctx(t *testing.T) context.Context { return t.Context() }

func mustCreate(t *testing.T, s store.Store, sbs ...*sandbox.Sandbox) {
	t.Helper()
	for _, sb := range sbs {
		if err := s.CreateSandbox(ctx(t), sb); err != nil {
			t.Fatalf("CreateSandbox(%s): %v", sb.ID, err)
		}
	}
}

func mustGet(t *testing.T, s store.Store, tenant, id string) *sandbox.Sandbox {
	t.Helper()
	sb, err := s.GetSandbox(ctx(t), tenant, id)
	if err != nil {
		t.Fatalf("GetSandbox(%q, %q): %v", tenant, id, err)
	}
	return sb
}

// same fails t unless got deep-equals want.
func same(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s differs\n got: %s\nwant: %s", what, dump(got), dump(want))
	}
}

func dump(v any) string {
	if sb, ok := v.(*sandbox.Sandbox); ok && sb != nil {
		s := fmt.Sprintf("%+v", *sb)
		if sb.Exit != nil {
			s += fmt.Sprintf(" exit=%+v", *sb.Exit)
		}
		return s
	}
	return fmt.Sprintf("%+v", v)
}

// wantErr fails t unless err is of kind with reason.
func wantErr(t *testing.T, what string, err, kind error, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got no error, want %v (%s)", what, kind, reason)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("%s: got %v (kind %v), want kind %v", what, err, sandbox.KindOf(err), kind)
	}
	if reason != "" && sandbox.ReasonOf(err) != reason {
		t.Fatalf("%s: got reason %q (%v), want %q", what, sandbox.ReasonOf(err), err, reason)
	}
}

// ids returns the ids of sbs in order.
func ids(sbs []*sandbox.Sandbox) []string {
	out := []string{}
	for _, sb := range sbs {
		out = append(out, sb.ID)
	}
	return out
}

// listAll follows page tokens until the last page.
func listAll(t *testing.T, s store.Store, f store.SandboxFilter) []string {
	t.Helper()
	var out []string
	for page := 0; ; page++ {
		if page > 1000 {
			t.Fatal("ListSandboxes never returned an empty next page token")
		}
		sbs, next, err := s.ListSandboxes(ctx(t), f)
		if err != nil {
			t.Fatalf("ListSandboxes(%+v): %v", f, err)
		}
		out = append(out, ids(sbs)...)
		if next == "" {
			return out
		}
		f.PageToken = next
	}
}
