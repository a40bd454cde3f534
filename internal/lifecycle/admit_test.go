package lifecycle

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/sbx-run/sbx/internal/lifecycle/lifecycletest"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
	"github.com/sbx-run/sbx/internal/store/sqlite"
)

// admitRuntime is the fake runtime with a sandbox.Admitter that says err.
type admitRuntime struct {
	*lifecycletest.Runtime
	err error
}

func (a *admitRuntime) Admit() error { return a.err }

// TestCreateAsksAdmitter: a runtime's Admit refusal is the create's
// answer, and nothing is recorded or created for it.
func TestCreateAsksAdmitter(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "sbx.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rt := &admitRuntime{Runtime: lifecycletest.NewRuntime()}
	rt.err = sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonDiskPoolFull, "the disk is full")
	m, err := New(rt, st, testConfig(&clock{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)

	_, err = m.Create(context.Background(), tenant, CreateRequest{Image: "busybox"})
	wantErr(t, err, sandbox.ErrResourceExhausted, sandbox.ReasonDiskPoolFull)
	if list, _, err := m.List(context.Background(), tenant, store.SandboxFilter{}); err != nil || len(list) != 0 {
		t.Errorf("after a refused create the tenant has %d sandboxes (%v), want none", len(list), err)
	}
	if rt.Len() != 0 {
		t.Errorf("after a refused create the runtime has %d sandboxes, want none", rt.Len())
	}
	rt.err = nil
	if _, err := m.Create(context.Background(), tenant, CreateRequest{Image: "busybox"}); err != nil {
		t.Fatalf("create once Admit allows it: %v", err)
	}
}
