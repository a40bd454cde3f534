package lifecycle

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

func TestMainExitCompletes(t *testing.T) {
	e := newEnv(t, nil)
	sb := e.create(t, CreateRequest{Image: "busybox:1", Command: []string{"exit", "0"}})
	if sb.State != sandbox.StateCreating {
		t.Fatalf("Create returned state %s, want CREATING", sb.State)
	}
	sb = e.wait(t, sb.ID, UntilTerminal)
	if sb.State != sandbox.StateCompleted || sb.Exit == nil || sb.Exit.Code != 0 || sb.Reason != sandbox.ReasonMainExited {
		t.Fatalf("got %s %q exit %+v", sb.State, sb.Reason, sb.Exit)
	}
	want := []sandbox.State{sandbox.StatePending, sandbox.StateCreating, sandbox.StateRunning, sandbox.StateCompleted}
	if !slices.Equal(states(sb), want) {
		t.Fatalf("transitions %v, want %v", states(sb), want)
	}
	if sb.StartedAt.IsZero() || sb.EndedAt.IsZero() || sb.ExpiresAt != sb.CreatedAt.Add(600*time.Second) {
		t.Fatalf("times: started %v ended %v expires %v created %v", sb.StartedAt, sb.EndedAt, sb.ExpiresAt, sb.CreatedAt)
	}
	eventually(t, "container released", func() bool { return !e.rt.Has(sb.ID) })
}

func TestMainNonZeroExitFails(t *testing.T) {
	e := newEnv(t, nil)
	sb := e.create(t, CreateRequest{Command: []string{"exit", "3"}})
	sb = e.wait(t, sb.ID, UntilTerminal)
	if sb.State != sandbox.StateFailed || sb.Exit == nil || sb.Exit.Code != 3 || sb.Reason != sandbox.ReasonMainExited {
		t.Fatalf("got %s %q exit %+v", sb.State, sb.Reason, sb.Exit)
	}
}

func TestStopIdleSandboxIsIdempotent(t *testing.T) {
	e := newEnv(t, nil)
	sb := e.create(t, CreateRequest{Image: "python:3.11"})
	sb = e.wait(t, sb.ID, UntilRunning)
	if sb.State != sandbox.StateRunning || sb.Spec.Image != "python:3.11" {
		t.Fatalf("got %s image %s", sb.State, sb.Spec.Image)
	}
	ctx := context.Background()
	stopped, err := e.m.Stop(ctx, tenant, sb.ID, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if stopped.State != sandbox.StateTerminated || stopped.Reason != sandbox.ReasonStoppedByUser {
		t.Fatalf("after Stop: %s %q", stopped.State, stopped.Reason)
	}
	again, err := e.m.Stop(ctx, tenant, sb.ID, 0)
	if err != nil || again.State != sandbox.StateTerminated || len(again.Transitions) != len(stopped.Transitions) {
		t.Fatalf("second Stop: %v %+v", err, again)
	}
	want := []sandbox.State{sandbox.StatePending, sandbox.StateCreating, sandbox.StateRunning, sandbox.StateTerminating, sandbox.StateTerminated}
	if !slices.Equal(states(again), want) {
		t.Fatalf("transitions %v, want %v", states(again), want)
	}
}

func TestStartFailureIsActionable(t *testing.T) {
	e := newEnv(t, nil)
	e.rt.CreateErr = func(spec sandbox.Spec) error {
		return sandbox.NotFound(sandbox.ReasonImageNotFound, "image %q: no such tag in the registry: check the name or import it", spec.Image)
	}
	sb := e.create(t, CreateRequest{Image: "nope:1"})
	sb = e.wait(t, sb.ID, UntilRunning)
	if sb.State != sandbox.StateFailed || !strings.HasPrefix(sb.Reason, sandbox.ReasonStartFailed) || !strings.Contains(sb.Reason, sandbox.ReasonImageNotFound) {
		t.Fatalf("got %s %q", sb.State, sb.Reason)
	}

	e.rt.CreateErr = nil
	e.rt.StartErr = func(string, sandbox.StartSpec) error {
		return sandbox.NotFound(sandbox.ReasonCommandNotFound, "command \"nosuch\" not found in the image")
	}
	sb = e.create(t, CreateRequest{Command: []string{"nosuch"}})
	sb = e.wait(t, sb.ID, UntilTerminal)
	if sb.State != sandbox.StateFailed || !strings.Contains(sb.Reason, sandbox.ReasonCommandNotFound) {
		t.Fatalf("got %s %q", sb.State, sb.Reason)
	}
	if e.rt.Has(sb.ID) {
		t.Fatal("failed start left its container behind")
	}
}

func TestCreateValidation(t *testing.T) {
	e := newEnv(t, nil)
	many := func(n int, f func(i int) string) []string {
		var out []string
		for i := range n {
			out = append(out, f(i))
		}
		return out
	}
	bigEnv := map[string]string{}
	for i := range MaxEnvVars + 1 {
		bigEnv["V"+strings.Repeat("x", i%5)+string(rune('A'+i%26))+strings.Repeat("Y", i/26)] = "1"
	}
	var manyFiles []sandbox.File
	for i := range MaxFiles + 1 {
		manyFiles = append(manyFiles, sandbox.File{Path: "/f/" + strings.Repeat("a", i+1)})
	}
	var bigFiles []sandbox.File
	for i := range 11 {
		bigFiles = append(bigFiles, sandbox.File{Path: "/f/" + strings.Repeat("b", i+1), Content: make([]byte, MaxFileBytes)})
	}
	cases := []struct {
		name   string
		req    CreateRequest
		reason string
	}{
		{"zero lifetime", CreateRequest{MaxLifetime: lifetime(0)}, sandbox.ReasonLifetimeTooLong},
		{"negative lifetime", CreateRequest{MaxLifetime: lifetime(-time.Second)}, sandbox.ReasonLifetimeTooLong},
		{"lifetime over max", CreateRequest{MaxLifetime: lifetime(25 * time.Hour)}, sandbox.ReasonLifetimeTooLong},
		{"bad image", CreateRequest{Image: "UPPER CASE::x"}, sandbox.ReasonInvalidImageRef},
		{"bad env name", CreateRequest{Env: map[string]string{"1X": "y"}}, sandbox.ReasonInvalidSpec},
		{"too many env", CreateRequest{Env: bigEnv}, sandbox.ReasonInvalidSpec},
		{"too many tags", CreateRequest{Tags: many(MaxTags+1, func(i int) string { return "t" + strings.Repeat("x", i) })}, sandbox.ReasonInvalidSpec},
		{"tag too long", CreateRequest{Tags: []string{strings.Repeat("t", MaxTagLen+1)}}, sandbox.ReasonInvalidSpec},
		{"empty tag", CreateRequest{Tags: []string{""}}, sandbox.ReasonInvalidSpec},
		{"too many args", CreateRequest{Command: many(MaxArgs+1, func(int) string { return "a" })}, sandbox.ReasonInvalidSpec},
		{"too many files", CreateRequest{Files: manyFiles}, sandbox.ReasonInvalidSpec},
		{"file too big", CreateRequest{Files: []sandbox.File{{Path: "/a", Content: make([]byte, MaxFileBytes+1)}}}, sandbox.ReasonFileTooLarge},
		{"files too big", CreateRequest{Files: bigFiles}, sandbox.ReasonFileTooLarge},
		{"unclean file", CreateRequest{Files: []sandbox.File{{Path: "/etc/../x"}}}, sandbox.ReasonInvalidPath},
		{"negative memory", CreateRequest{Resources: sandbox.Resources{MemoryBytes: -1}}, sandbox.ReasonInvalidSpec},
		{"bad user", CreateRequest{User: "root; rm"}, sandbox.ReasonInvalidSpec},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.m.Create(context.Background(), tenant, c.req)
			wantErr(t, err, sandbox.ErrInvalidArgument, c.reason)
		})
	}
	_, err := e.m.Create(context.Background(), tenant, CreateRequest{MaxLifetime: lifetime(0)})
	if !strings.Contains(err.Error(), "1 to 86400") {
		t.Fatalf("lifetime error does not name the range: %v", err)
	}
	if n, _ := e.st.CountActive(context.Background(), tenant); n != 0 {
		t.Fatalf("rejected creates left %d records", n)
	}
}

func TestIdempotentCreate(t *testing.T) {
	e := newEnv(t, nil)
	a := e.create(t, CreateRequest{RequestID: "req-1"})
	b := e.create(t, CreateRequest{RequestID: "req-1", Image: "other:1"})
	if a.ID != b.ID {
		t.Fatalf("retry made a second sandbox: %s vs %s", a.ID, b.ID)
	}
	c, err := e.m.Create(context.Background(), "t-2", CreateRequest{RequestID: "req-1"})
	if err != nil || c.ID == a.ID {
		t.Fatalf("other tenant's request id collided: %v", err)
	}
}

func TestQuota(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxSandboxesPerTenant = 2 })
	ctx := context.Background()
	a := e.create(t, CreateRequest{})
	e.create(t, CreateRequest{})
	_, err := e.m.Create(ctx, tenant, CreateRequest{})
	wantErr(t, err, sandbox.ErrResourceExhausted, sandbox.ReasonQuotaExceeded)
	if sandbox.RetryAfterOf(err) <= 0 {
		t.Fatal("quota error carries no retry delay")
	}
	if _, err := e.m.Create(ctx, "t-other", CreateRequest{}); err != nil {
		t.Fatalf("other tenant hit this tenant's quota: %v", err)
	}
	if _, err := e.m.Stop(ctx, tenant, a.ID, 0); err != nil {
		t.Fatal(err)
	}
	e.create(t, CreateRequest{})

	// A tenant's own quota overrides the default.
	if err := e.st.CreateTenant(ctx, &sandbox.Tenant{ID: "t-big", MaxSandboxes: 3}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := e.m.Create(ctx, "t-big", CreateRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = e.m.Create(ctx, "t-big", CreateRequest{})
	wantErr(t, err, sandbox.ErrResourceExhausted, sandbox.ReasonQuotaExceeded)
}

func TestTenancy(t *testing.T) {
	e := newEnv(t, nil)
	sb := e.create(t, CreateRequest{})
	ctx := context.Background()
	_, err := e.m.Get(ctx, "t-2", sb.ID)
	wantErr(t, err, sandbox.ErrNotFound, sandbox.ReasonSandboxNotFound)
	_, err = e.m.Stop(ctx, "t-2", sb.ID, 0)
	wantErr(t, err, sandbox.ErrNotFound, sandbox.ReasonSandboxNotFound)
	err = e.m.Delete(ctx, "t-2", sb.ID)
	wantErr(t, err, sandbox.ErrNotFound, sandbox.ReasonSandboxNotFound)
	_, err = e.m.Agent(ctx, "t-2", sb.ID)
	wantErr(t, err, sandbox.ErrNotFound, sandbox.ReasonSandboxNotFound)
	page, _, err := e.m.List(ctx, "t-2", store.SandboxFilter{IncludeTerminal: true})
	if err != nil || len(page) != 0 {
		t.Fatalf("other tenant lists %d sandboxes (%v)", len(page), err)
	}
}

func TestAgentNeedsRunning(t *testing.T) {
	e := newEnv(t, nil)
	sb := e.create(t, CreateRequest{Command: []string{"exit", "0"}})
	e.wait(t, sb.ID, UntilTerminal)
	_, err := e.m.Agent(context.Background(), tenant, sb.ID)
	wantErr(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonSandboxNotRunning)

	idle := e.create(t, CreateRequest{})
	e.wait(t, idle.ID, UntilRunning)
	a, err := e.m.Agent(context.Background(), tenant, idle.ID)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
}

// TestAgentWaitsForStart: an agent call on a sandbox that is still
// starting waits for it (no Wait round trip for "create, then exec"),
// and fails SANDBOX_NOT_RUNNING if the start fails; ctx bounds the wait.
func TestAgentWaitsForStart(t *testing.T) {
	e := newEnv(t, nil)
	gate := make(chan struct{})
	e.rt.CreateGate = gate
	ctx := context.Background()
	sb := e.create(t, CreateRequest{})
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := e.m.Agent(short, tenant, sb.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Agent with a short ctx while creating: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		a, err := e.m.Agent(ctx, tenant, sb.ID)
		if err == nil {
			a.Close()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("Agent returned before the sandbox ran: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	gate <- struct{}{}
	if err := <-got; err != nil {
		t.Fatalf("Agent once it ran: %v", err)
	}

	e.rt.CreateErr = func(sandbox.Spec) error { return sandbox.Internal("no container today") }
	failing := e.create(t, CreateRequest{})
	go func() {
		_, err := e.m.Agent(ctx, tenant, failing.ID)
		got <- err
	}()
	gate <- struct{}{}
	wantErr(t, <-got, sandbox.ErrFailedPrecondition, sandbox.ReasonSandboxNotRunning)
}

func TestWaitTimeoutAndStopWhileCreating(t *testing.T) {
	e := newEnv(t, nil)
	gate := make(chan struct{})
	e.rt.CreateGate = gate
	sb := e.create(t, CreateRequest{})
	ctx := context.Background()
	got, ok, err := e.m.Wait(ctx, tenant, sb.ID, UntilRunning, 20*time.Millisecond)
	if err != nil || ok || got.State != sandbox.StateCreating {
		t.Fatalf("Wait: ok=%v err=%v state=%v", ok, err, got)
	}
	stopped, err := e.m.Stop(ctx, tenant, sb.ID, 0)
	if err != nil || stopped.State != sandbox.StateTerminated {
		t.Fatalf("Stop while creating: %v %+v", err, stopped)
	}
	close(gate)
	eventually(t, "late container cleaned up", func() bool { return e.rt.Len() == 0 })
	got, _ = e.m.Get(ctx, tenant, sb.ID)
	if got.State != sandbox.StateTerminated {
		t.Fatalf("late create changed a stopped sandbox to %s", got.State)
	}
}

func TestDelete(t *testing.T) {
	e := newEnv(t, nil)
	sb := e.create(t, CreateRequest{})
	e.wait(t, sb.ID, UntilRunning)
	ctx := context.Background()
	if err := e.m.Delete(ctx, tenant, sb.ID); err != nil {
		t.Fatal(err)
	}
	_, err := e.m.Get(ctx, tenant, sb.ID)
	wantErr(t, err, sandbox.ErrNotFound, sandbox.ReasonSandboxNotFound)
	eventually(t, "the container to be torn down after Delete", func() bool { return !e.rt.Has(sb.ID) })
}

func TestListFilters(t *testing.T) {
	e := newEnv(t, nil)
	a := e.create(t, CreateRequest{Tags: []string{"x", "y"}})
	e.create(t, CreateRequest{Tags: []string{"x"}})
	done := e.create(t, CreateRequest{Tags: []string{"x", "y"}, Command: []string{"exit", "0"}})
	e.wait(t, done.ID, UntilTerminal)
	ctx := context.Background()
	page, _, err := e.m.List(ctx, tenant, store.SandboxFilter{Tags: []string{"x", "y"}})
	if err != nil || len(page) != 1 || page[0].ID != a.ID {
		t.Fatalf("tags AND without terminal: %v %d", err, len(page))
	}
	page, _, _ = e.m.List(ctx, tenant, store.SandboxFilter{Tags: []string{"x", "y"}, IncludeTerminal: true})
	if len(page) != 2 {
		t.Fatalf("with terminal: %d, want 2", len(page))
	}
	_, _, err = e.m.List(ctx, tenant, store.SandboxFilter{PageSize: 5000})
	if !errors.Is(err, sandbox.ErrInvalidArgument) {
		t.Fatalf("page size 5000: %v", err)
	}
}

// Agent serves a running sandbox (from the manager's own record of what
// runs) and refuses it once stopped; OnStopping hears of the stop.
func TestAgentFollowsStopAndOnStopping(t *testing.T) {
	var mu sync.Mutex
	var stopping []string
	e := newEnv(t, func(c *Config) {
		c.OnStopping = func(id string) { mu.Lock(); stopping = append(stopping, id); mu.Unlock() }
	})
	ctx := context.Background()
	sb := e.wait(t, e.create(t, CreateRequest{}).ID, UntilRunning)
	a, err := e.m.Agent(ctx, tenant, sb.ID)
	if err != nil {
		t.Fatalf("Agent of a running sandbox: %v", err)
	}
	a.Close()
	if _, err := e.m.Agent(ctx, "other-tenant", sb.ID); sandbox.KindOf(err) != sandbox.ErrNotFound {
		t.Fatalf("Agent for another tenant: %v, want NotFound", err)
	}
	if _, err := e.m.Stop(ctx, tenant, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	_, err = e.m.Agent(ctx, tenant, sb.ID)
	wantErr(t, err, sandbox.ErrFailedPrecondition, sandbox.ReasonSandboxNotRunning)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(stopping, sb.ID) {
		t.Errorf("OnStopping heard %v, want %s", stopping, sb.ID)
	}
}
