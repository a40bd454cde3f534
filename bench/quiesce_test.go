package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestTeardownsBusy reads the server's teardown gauges, and Quiesce waits
// until both are zero.
func TestTeardownsBusy(t *testing.T) {
	var queued atomic.Int32
	queued.Store(2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, "no key", http.StatusUnauthorized)
			return
		}
		n := queued.Load()
		if n > 0 {
			queued.Add(-1)
		}
		fmt.Fprintf(w, "# HELP sbx_teardowns_queued x\nsbx_teardowns_queued %d\nsbx_teardowns_running 0\n", n)
	}))
	defer srv.Close()
	ctx := context.Background()
	if busy, ok := teardownsBusy(ctx, srv.URL, "k"); !ok || !busy {
		t.Fatalf("2 queued: busy %v ok %v", busy, ok)
	}
	queued.Store(3)
	b := &SBX{Key: "k"}
	if d := b.quiesceURL(ctx, srv.URL, time.Minute); queued.Load() != 0 || d >= time.Minute {
		t.Fatalf("Quiesce returned after %v with %d queued", d, queued.Load())
	}
	if _, ok := teardownsBusy(ctx, srv.URL+"/nothing", "k"); ok {
		t.Error("a server without the gauges read as having them")
	}
}
