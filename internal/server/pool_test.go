package server_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/internal/lifecycle"
)

func TestPoolList(t *testing.T) {
	e := newEnv(t, options{pools: []lifecycle.PoolConfig{{Image: "busybox", MinIdle: 2, Max: 3}}})
	ctx := context.Background()
	c := e.pools(e.keyB)
	var p *sbxv1.Pool
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		resp, err := c.List(ctx, connect.NewRequest(&sbxv1.ListPoolsRequest{}))
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(resp.Msg.Pools) != 1 {
			t.Fatalf("pools: %v", resp.Msg.Pools)
		}
		if p = resp.Msg.Pools[0]; p.Idle == 2 || time.Now().After(deadline) {
			break
		}
	}
	if p.Key != "index.docker.io/library/busybox:latest" || p.Image != "busybox" || p.MinIdle != 2 || p.Max != 3 ||
		p.Idle != 2 || p.Refills != 2 || p.LastRefillTime == nil || p.LastError != "" || p.RetryTime != nil {
		t.Fatalf("pool: %v", p)
	}

	// A create from the pool counts as a hit.
	sb := running(t, e.sandboxes(e.keyA), &sbxv1.CreateSandboxRequest{Image: "busybox"})
	resp, err := c.List(ctx, connect.NewRequest(&sbxv1.ListPoolsRequest{}))
	if err != nil || resp.Msg.Pools[0].Hits != 1 {
		t.Fatalf("after create of %s: %v, %v", sb.Id, resp.Msg, err)
	}

	// Unauthenticated callers get nothing.
	_, err = e.pools("wrong-key").List(ctx, connect.NewRequest(&sbxv1.ListPoolsRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated, "UNAUTHENTICATED")
}
