package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

func fullSession(tenant, id string, n int) *sandbox.Session {
	return &sandbox.Session{
		ID:       id,
		TenantID: tenant,
		Defaults: sandbox.SessionDefaults{
			Image:       "python:3.11",
			MaxLifetime: 10 * time.Minute,
			Tags:        []string{"eval", "run:1"},
			Env:         map[string]string{"SEED": "42"},
			Resources:   sandbox.Resources{CPUMillis: 500, MemoryBytes: 1 << 30, Pids: 64},
		},
		Lease:         30 * time.Second,
		CreatedAt:     at(n),
		LastHeartbeat: at(n + 1),
	}
}

func testSessions(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	for i, sess := range []*sandbox.Session{fullSession("t1", "s1", 1), fullSession("t1", "s2", 2), fullSession("t2", "s3", 3)} {
		if err := s.CreateSession(ctx(t), sess); err != nil {
			t.Fatalf("CreateSession %d: %v", i, err)
		}
	}
	wantErr(t, "duplicate session", s.CreateSession(ctx(t), fullSession("t2", "s1", 9)), sandbox.ErrAlreadyExists, sandbox.ReasonSessionExists)

	got, err := s.GetSession(ctx(t), "t1", "s1")
	if err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	same(t, "session round trip", got, fullSession("t1", "s1", 1))
	if got, err = s.GetSession(ctx(t), "", "s3"); err != nil || got.TenantID != "t2" {
		t.Fatalf("GetSession(any tenant) = %v, %v", got, err)
	}

	// Heartbeat, then close.
	beat := at(20)
	got, err = s.UpdateSession(ctx(t), "s1", func(sess *sandbox.Session) error { sess.LastHeartbeat = beat; return nil })
	if err != nil || !got.LastHeartbeat.Equal(beat) {
		t.Fatalf("UpdateSession heartbeat = %v, %v", got, err)
	}
	want := fullSession("t1", "s1", 1)
	want.LastHeartbeat = beat
	got, _ = s.GetSession(ctx(t), "t1", "s1")
	same(t, "session after heartbeat", got, want)

	_, err = s.UpdateSession(ctx(t), "s2", func(sess *sandbox.Session) error {
		sess.ClosedAt = at(30)
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("aborted UpdateSession returned %v, want the function's error", err)
	}
	got, _ = s.GetSession(ctx(t), "t1", "s2")
	same(t, "session after aborted update", got, fullSession("t1", "s2", 2))

	listed := func(tenant string, want ...string) {
		t.Helper()
		sessions, err := s.ListSessions(ctx(t), tenant)
		if err != nil {
			t.Fatalf("ListSessions(%q): %v", tenant, err)
		}
		var gotIDs []string
		for _, sess := range sessions {
			gotIDs = append(gotIDs, sess.ID)
		}
		same(t, "open sessions of "+tenant, gotIDs, want)
	}
	listed("", "s1", "s2", "s3")
	listed("t1", "s1", "s2")
	listed("t3")

	if _, err := s.UpdateSession(ctx(t), "s2", func(sess *sandbox.Session) error {
		sess.ClosedAt = at(30)
		sess.CloseReason = sandbox.ReasonStoppedBySession
		return nil
	}); err != nil {
		t.Fatalf("close session: %v", err)
	}
	listed("", "s1", "s3")
	listed("t1", "s1")
	got, _ = s.GetSession(ctx(t), "t1", "s2")
	if !got.ClosedAt.Equal(at(30)) || got.CloseReason != sandbox.ReasonStoppedBySession {
		t.Fatalf("closed session came back as %+v", got)
	}
	_, err = s.UpdateSession(ctx(t), "s1", func(sess *sandbox.Session) error { sess.TenantID = "t2"; return nil })
	if err == nil {
		t.Fatal("UpdateSession let the function move a session to another tenant")
	}
}

func testTenantsAndKeys(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	tenant := &sandbox.Tenant{ID: "t1", Name: "Team One", MaxSandboxes: 50}
	if err := s.CreateTenant(ctx(t), tenant); err != nil {
		t.Fatalf("CreateTenant: %v", err)
	}
	wantErr(t, "duplicate tenant", s.CreateTenant(ctx(t), &sandbox.Tenant{ID: "t1"}), sandbox.ErrAlreadyExists, sandbox.ReasonTenantExists)
	got, err := s.GetTenant(ctx(t), "t1")
	if err != nil {
		t.Fatalf("GetTenant: %v", err)
	}
	same(t, "tenant", got, &sandbox.Tenant{ID: "t1", Name: "Team One", MaxSandboxes: 50})

	key := &sandbox.APIKey{ID: "k1", TenantID: "t1", Hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", CreatedAt: at(1)}
	if err := s.CreateAPIKey(ctx(t), key); err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	wantErr(t, "duplicate key id", s.CreateAPIKey(ctx(t), &sandbox.APIKey{ID: "k1", TenantID: "t1", Hash: "other", CreatedAt: at(2)}),
		sandbox.ErrAlreadyExists, sandbox.ReasonAPIKeyExists)
	wantErr(t, "duplicate key hash", s.CreateAPIKey(ctx(t), &sandbox.APIKey{ID: "k2", TenantID: "t2", Hash: key.Hash, CreatedAt: at(2)}),
		sandbox.ErrAlreadyExists, sandbox.ReasonAPIKeyExists)
	gotKey, err := s.LookupAPIKey(ctx(t), key.Hash)
	if err != nil {
		t.Fatalf("LookupAPIKey: %v", err)
	}
	same(t, "API key", gotKey, &sandbox.APIKey{ID: "k1", TenantID: "t1", Hash: key.Hash, CreatedAt: at(1)})
	_, err = s.LookupAPIKey(ctx(t), "other")
	wantErr(t, "hash of a key whose create failed", err, sandbox.ErrNotFound, sandbox.ReasonAPIKeyNotFound)
}

func testReopen(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	mustCreate(t, s, fullSandbox("t1", "sb-1", 1), newSandbox("t1", "sb-2", 2, sandbox.StateRunning, "x"))
	if _, err := s.UpdateSandbox(ctx(t), "sb-2", func(sb *sandbox.Sandbox) error { sb.Reason = "updated"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx(t), fullSession("t1", "s1", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTenant(ctx(t), &sandbox.Tenant{ID: "t1", Name: "one"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAPIKey(ctx(t), &sandbox.APIKey{ID: "k1", TenantID: "t1", Hash: "h1", CreatedAt: at(1)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t)
	same(t, "sandbox after reopen", mustGet(t, s, "t1", "sb-1"), fullSandbox("t1", "sb-1", 1))
	if sb := mustGet(t, s, "t1", "sb-2"); sb.Reason != "updated" {
		t.Fatalf("update lost across reopen: %s", dump(sb))
	}
	same(t, "tag filter after reopen", listAll(t, s, store.SandboxFilter{Tags: []string{"x"}}), []string{"sb-2"})
	sess, err := s.GetSession(ctx(t), "t1", "s1")
	if err != nil {
		t.Fatal(err)
	}
	same(t, "session after reopen", sess, fullSession("t1", "s1", 1))
	if _, err := s.GetTenant(ctx(t), "t1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupAPIKey(ctx(t), "h1"); err != nil {
		t.Fatal(err)
	}
	// And the reopened store takes writes.
	mustCreate(t, s, newSandbox("t1", "sb-3", 3, sandbox.StateRunning))
	wantErr(t, "duplicate after reopen", s.CreateSandbox(ctx(t), newSandbox("t1", "sb-1", 9, sandbox.StateRunning)), sandbox.ErrAlreadyExists, sandbox.ReasonSandboxExists)
}
