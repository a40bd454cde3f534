package lifecycle

import (
	"errors"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// watchMain blocks until the sandbox's main command exits (or the sandbox
// is gone) and records the outcome: COMPLETED for exit 0, FAILED otherwise,
// with the exit status kept. If a stop is in progress the stopper records
// the end instead. It returns early when the manager closes.
func (m *Manager) watchMain(id string) {
	if _, loaded := m.watching.LoadOrStore(id, true); loaded {
		return
	}
	defer m.watching.Delete(id)
	for {
		st, err := m.rt.Wait(m.base, id)
		if m.base.Err() != nil {
			return
		}
		switch {
		case err == nil:
			m.mainExited(id, st)
			return
		case errors.Is(err, sandbox.ErrNotFound):
			m.transition(m.base, id, []sandbox.State{sandbox.StateRunning}, sandbox.StateFailed, sandbox.ReasonLost, nil)
			return
		default:
			// The runtime did not answer; try again shortly rather than
			// declare the sandbox lost on a transient error.
			m.cfg.Logger.Warn("waiting for main command", "sandbox", id, "error", err)
			select {
			case <-m.base.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// mainExited records the end of a RUNNING sandbox's main command and
// schedules the release of its container.
func (m *Manager) mainExited(id string, st sandbox.ExitStatus) {
	sb, err := m.st.GetSandbox(m.base, "", id)
	if err != nil || sb.State != sandbox.StateRunning {
		return
	}
	to, reason := sandbox.StateCompleted, sandbox.ReasonMainExited
	if st.TimedOut {
		// The agent ended the sandbox at its deadline, long past its
		// lifetime, because no server stopped it (backstop.go): a
		// lifetime stop, not a crash. (A main command has no timeout
		// of its own.)
		to, reason = sandbox.StateTerminated, sandbox.ReasonLifetime
	} else if len(sb.Start.Command) == 0 {
		// An idle sandbox's container ended without a stop from us.
		to, reason = sandbox.StateFailed, sandbox.ReasonLost
	} else if st.Code != 0 {
		to = sandbox.StateFailed
	}
	exit := st
	if exit.At.IsZero() {
		exit.At = m.cfg.Now()
	}
	_, ok, _ := m.transition(m.base, id, []sandbox.State{sandbox.StateRunning}, to, reason, func(sb *sandbox.Sandbox) {
		sb.Exit = &exit
	})
	if ok {
		m.scheduleRelease(id)
	}
}

// scheduleRelease deletes a terminal sandbox's container after the linger
// period, during which its logs stay readable, through the teardown queue
// (teardown.go). If the server restarts first, Recover releases it.
func (m *Manager) scheduleRelease(id string) {
	time.AfterFunc(m.cfg.Linger, func() { m.releaseRuntime(id, 0, false) })
}
