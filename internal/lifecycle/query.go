package lifecycle

import (
	"context"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/store"
)

// Get returns a tenant's sandbox; another tenant's id is NotFound.
func (m *Manager) Get(ctx context.Context, tenantID, id string) (*sandbox.Sandbox, error) {
	if err := ValidateID("sandbox id", id); err != nil {
		return nil, err
	}
	return m.st.GetSandbox(ctx, tenantID, id)
}

// List returns one page of a tenant's sandboxes; f.TenantID is overridden.
func (m *Manager) List(ctx context.Context, tenantID string, f store.SandboxFilter) ([]*sandbox.Sandbox, string, error) {
	if err := ValidateTagFilter(f.Tags); err != nil {
		return nil, "", err
	}
	if f.SessionID != "" {
		if err := ValidateID("session_id", f.SessionID); err != nil {
			return nil, "", err
		}
	}
	if f.PageSize < 0 || f.PageSize > 1000 {
		return nil, "", invalid("page_size %d is out of range: give 0 (default 100) to 1000", f.PageSize)
	}
	if len(f.PageToken) > 1024 {
		return nil, "", invalid("page_token is malformed: pass the next_page_token of the previous page")
	}
	for _, s := range f.States {
		if !s.Valid() {
			return nil, "", invalid("state %q is unknown", s)
		}
	}
	f.TenantID = tenantID
	return m.st.ListSandboxes(ctx, f)
}

// Until is what Wait waits for.
type Until int

// The wait conditions.
const (
	// UntilRunning returns once the sandbox is RUNNING or terminal.
	UntilRunning Until = iota + 1
	// UntilTerminal returns once the sandbox is terminal.
	UntilTerminal
)

const untilTerminal = UntilTerminal

func (u Until) reached(s sandbox.State) bool {
	if u == UntilRunning && s == sandbox.StateRunning {
		return true
	}
	return s.Terminal()
}

// recheck bounds how long a waiter sleeps without re-reading the store: a
// change made by another server replica sends no in-process notification.
const recheck = 2 * time.Second

// Wait blocks until a tenant's sandbox reaches until, or timeout passes, or
// ctx ends. It returns the record and whether the condition was reached.
func (m *Manager) Wait(ctx context.Context, tenantID, id string, until Until, timeout time.Duration) (*sandbox.Sandbox, bool, error) {
	if _, err := m.Get(ctx, tenantID, id); err != nil {
		return nil, false, err
	}
	sb, err := m.waitFor(ctx, id, until, timeout)
	if err != nil {
		return nil, false, err
	}
	return sb, until.reached(sb.State), nil
}

// waitFor returns the record once it reaches until or timeout passes.
func (m *Manager) waitFor(ctx context.Context, id string, until Until, timeout time.Duration) (*sandbox.Sandbox, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		// Take the channel before reading, so no change can slip between.
		ch := m.notify.watch(id)
		sb, err := m.st.GetSandbox(ctx, "", id)
		if err != nil {
			return nil, err
		}
		if until.reached(sb.State) {
			return sb, nil
		}
		select {
		case <-ch:
		case <-time.After(recheck):
		case <-deadline.C:
			return sb, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
