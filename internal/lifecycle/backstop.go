package lifecycle

import (
	"context"
	"errors"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// The lifetime backstop. Sandboxes keep running while the server is down,
// so that they survive its restarts; a sandbox whose lifetime runs out
// then is stopped only when the server comes back (sweep.go), and never if
// it does not. So every sandbox's agent is given a deadline,
// ExpiresAt + Config.LifetimeBackstop (sandbox.StartSpec.Deadline), at
// which it ends the sandbox by itself if it still runs
// (internal/agent/backstop.go), and records the main command's exit with
// TimedOut set, which mainExited (watch.go) records as TERMINATED for
// reason "lifetime" when the server sees it, live or in Recover.
//
// The deadline travels with the start: the cold create's and a warm
// claim's Runtime.Start (runtimeStart); a warm sandbox claimed RUNNING,
// which needs no start, gets a deadline-only one (handOverDeadline), and
// so does every sandbox Recover re-attaches (one made by an older server
// has none; a crash may have cut a hand-over). An idle pool sandbox has
// none: it has no lifetime, pools have no age bound, and a restarted
// server reuses or removes it (pool_recover.go). Nothing moves ExpiresAt
// after create, so nothing else sends one.

// DefaultLifetimeBackstop is Config.LifetimeBackstop's default. The
// server's own lifetime stop takes up to SweepInterval (1 s) to notice,
// then StopGrace (10 s) between SIGTERM and SIGKILL: a minute is five
// times that, for a loaded host, a server restarting for an upgrade, and
// the clock skew between nodes that a runtime on many machines would
// have, so the backstop never races a server that is up, while a sandbox
// whose server is gone outlives its lifetime by about a minute, not for
// ever. A stop asked with a grace that reaches over a minute past the
// lifetime is cut short there.
const DefaultLifetimeBackstop = time.Minute

// MaxLifetimeBackstop bounds Config.LifetimeBackstop.
const MaxLifetimeBackstop = 24 * time.Hour

// handOverTimeout bounds the deadline-only start of handOverDeadline.
const handOverTimeout = 30 * time.Second

// backstopAt returns when sb's agent ends it by itself, or zero when the
// backstop is off.
func (m *Manager) backstopAt(sb *sandbox.Sandbox) time.Time {
	if m.cfg.LifetimeBackstop < 0 || sb.ExpiresAt.IsZero() {
		return time.Time{}
	}
	return sb.ExpiresAt.Add(m.cfg.LifetimeBackstop)
}

// runtimeStart returns the start the runtime gets for sb: its own, with
// the secret values joined to its env and the backstop's deadline. Neither
// is ever stored.
func (m *Manager) runtimeStart(sb *sandbox.Sandbox, secretEnv map[string]string) sandbox.StartSpec {
	start := withSecrets(sb.Start, secretEnv)
	start.Deadline = m.backstopAt(sb)
	return start
}

// handOverDeadline gives a running sandbox's agent its deadline, for a
// warm sandbox claimed RUNNING (its pool applied an empty start, and the
// claim brought none) and a re-attached one: a start that is empty but
// for the deadline, which the agent applies as only that, even once a
// process runs. A failure is only logged: the server still stops the
// sandbox at its lifetime; what is missing is the backstop for a server
// that is gone.
func (m *Manager) handOverDeadline(sb *sandbox.Sandbox) {
	at := m.backstopAt(sb)
	if at.IsZero() {
		return
	}
	ctx, cancel := context.WithTimeout(m.base, handOverTimeout)
	defer cancel()
	err := m.rt.Start(ctx, sb.ID, sandbox.StartSpec{Deadline: at})
	if err == nil {
		m.cfg.Logger.Debug("lifetime deadline handed over", "sandbox", sb.ID, "deadline", at)
		return
	}
	// NotFound, FailedPrecondition: stopped or deleted meanwhile (or, for
	// FailedPrecondition, an agent of an older sbx, which takes none).
	if m.base.Err() == nil && !errors.Is(err, sandbox.ErrNotFound) && !errors.Is(err, sandbox.ErrFailedPrecondition) {
		m.cfg.Logger.Warn("handing the lifetime deadline to the sandbox's agent", "sandbox", sb.ID, "error", err)
	}
}
