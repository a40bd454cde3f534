package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/lifecycle/lifecycletest"
	"github.com/sbx-run/sbx/internal/server"
)

// TestCallLimitPerTenant checks the bound on a tenant's calls in flight:
// past it calls are refused with RESOURCE_EXHAUSTED TOO_MANY_CALLS and a
// retry delay, another tenant is not affected, and calls pass again once
// the tenant's calls end.
func TestCallLimitPerTenant(t *testing.T) {
	e := newEnv(t, options{maxCalls: 2})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := e.sandboxes(e.keyA)
	sb := running(t, a, &sbxv1.CreateSandboxRequest{})

	// Two waits for the sandbox's end hold both of tenant a's calls.
	waitCtx, endWaits := context.WithCancel(ctx)
	defer endWaits()
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The polling Get below holds a slot of its own now and
			// then, so a wait that starts alongside it may be refused;
			// it tries again until it holds its slot.
			for waitCtx.Err() == nil {
				_, err := a.Wait(waitCtx, connect.NewRequest(&sbxv1.WaitSandboxRequest{Id: sb.Id, TimeoutSeconds: 50}))
				if connect.CodeOf(err) != connect.CodeResourceExhausted {
					return
				}
			}
		}()
	}
	var refused error
	for refused == nil && ctx.Err() == nil {
		_, err := a.Get(ctx, connect.NewRequest(&sbxv1.GetSandboxRequest{Id: sb.Id}))
		var ce *connect.Error
		if errors.As(err, &ce) && ce.Code() == connect.CodeResourceExhausted {
			refused = err
			break
		}
		if err != nil {
			t.Fatalf("Get while the waits start: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ce := wantCode(t, refused, connect.CodeResourceExhausted, "TOO_MANY_CALLS")
	if ce.Meta().Get(server.RetryAfterHeader) == "" {
		t.Errorf("TOO_MANY_CALLS without a retry delay: %v", ce)
	}
	// Another tenant's calls pass.
	if _, err := e.sandboxes(e.keyB).List(ctx, connect.NewRequest(&sbxv1.ListSandboxesRequest{})); err != nil {
		t.Errorf("tenant b while tenant a is at its limit: %v", err)
	}
	// A stream counts too: while a's slots are full, an exec is refused.
	if s, err := a.Exec(ctx, connect.NewRequest(&sbxv1.ExecRequest{SandboxId: sb.Id, Command: []string{"true"}})); err == nil {
		s.Receive()
		if err := s.Err(); err == nil {
			t.Error("an exec passed while tenant a was at its limit")
		} else {
			wantCode(t, err, connect.CodeResourceExhausted, "TOO_MANY_CALLS")
		}
		s.Close()
	}
	if _, err := e.sandboxes(e.keyB).Get(ctx, connect.NewRequest(&sbxv1.GetSandboxRequest{Id: sb.Id})); err == nil {
		t.Error("tenant b sees tenant a's sandbox")
	}
	// The waits end (their clients went away); a's calls pass again.
	endWaits()
	wg.Wait()
	for {
		_, err := a.Get(ctx, connect.NewRequest(&sbxv1.GetSandboxRequest{Id: sb.Id}))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("tenant a's calls never passed again after its waits ended: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCallLimitCoversBulk checks that bulk transfers and RPCs share one
// bound: with the tenant's only slot held by a Wait, a bulk GET is refused
// with 429 TOO_MANY_CALLS and a Retry-After.
func TestCallLimitCoversBulk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, st := startManager(t, lifecycletest.NewRuntime(), lifecycle.Config{Linger: time.Hour, SweepInterval: 10 * time.Millisecond})
	_, key, err := auth.NewTenant(ctx, st, "a")
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Manager: m, Auth: auth.NewAuthenticator(st), Logger: quietLog, Calls: server.NewCallLimit(1)}
	mux := http.NewServeMux()
	mux.Handle("/", server.New(cfg))
	mux.Handle(server.BulkPrefix, server.NewBulk(cfg))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := sbxv1connect.NewSandboxServiceClient(&http.Client{Transport: bearer{key: key, next: http.DefaultTransport}}, srv.URL)
	sb := running(t, c, &sbxv1.CreateSandboxRequest{})

	waitCtx, endWait := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A polling GET below may take the slot as the wait starts; the
		// wait tries again until it holds the slot.
		for waitCtx.Err() == nil {
			_, err := c.Wait(waitCtx, connect.NewRequest(&sbxv1.WaitSandboxRequest{Id: sb.Id, TimeoutSeconds: 50}))
			if connect.CodeOf(err) != connect.CodeResourceExhausted {
				return
			}
		}
	}()
	defer func() { endWait(); <-done }()
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+server.BulkPrefix+sb.Id+"/file?path=/etc/hostname", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			if r := resp.Header.Get(server.ReasonHeader); r != "TOO_MANY_CALLS" || resp.Header.Get(server.RetryAfterHeader) == "" {
				t.Errorf("429 with Sbx-Reason %q and Retry-After %q", r, resp.Header.Get(server.RetryAfterHeader))
			}
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("a bulk GET was never refused while the tenant's only call slot was held")
}
