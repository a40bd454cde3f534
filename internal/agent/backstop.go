package agent

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// The lifetime backstop. The server stops a sandbox when its lifetime runs
// out, but sandboxes keep running while the server is down (so that they
// survive its restarts): a sandbox whose server never comes back would run
// for ever. So the host gives the agent a deadline with every Init
// (StartSpec.Deadline: the sandbox's ExpiresAt plus a grace longer than
// the server's own stop takes), and an agent still running at that time
// ends the sandbox by itself: SIGTERM to every process of the sandbox,
// SIGKILL after Config.StopGrace, the main command's exit status recorded
// in ExitFile with TimedOut set (for an idle sandbox, a SIGTERM status made
// up for it), and Run returns ErrDeadline. A server that comes back reads
// that exit file and records the sandbox stopped for its lifetime, not
// crashed. While the server is up it stops the sandbox at ExpiresAt, and
// the backstop never fires.
//
// Waiting costs nothing: one runtime timer, no goroutine, no wake-up.

// ErrDeadline is what Run returns when the agent ended the sandbox at its
// deadline.
var ErrDeadline = errors.New("the sandbox's deadline passed with nothing stopping it: the agent ended it (the lifetime backstop)")

// ExitDeadline is sbx-agent's exit code after ErrDeadline (timeout(1)'s).
const ExitDeadline = 124

// deadlineTimer calls fire once, at the deadline last set. The zero value
// has no deadline.
type deadlineTimer struct {
	fire func()

	mu sync.Mutex
	at time.Time
	t  *time.Timer
	// gen counts the sets, so that a timer func that started just before
	// a re-arm does not fire for the old deadline.
	gen   uint64
	fired bool
}

// set arms the timer for at, replacing any earlier deadline; a zero at
// disarms it. Once it has fired, set changes nothing.
func (d *deadlineTimer) set(at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fired {
		return
	}
	d.gen++
	d.at = at
	if d.t != nil {
		d.t.Stop()
		d.t = nil
	}
	if at.IsZero() {
		return
	}
	gen := d.gen
	d.t = time.AfterFunc(time.Until(at), func() { d.expire(gen) })
}

// expire fires if gen is still the current deadline's.
func (d *deadlineTimer) expire(gen uint64) {
	d.mu.Lock()
	if gen != d.gen || d.fired {
		d.mu.Unlock()
		return
	}
	d.fired, d.t = true, nil
	d.mu.Unlock()
	d.fire()
}

// deadline returns the deadline armed (zero: none) and whether it fired.
func (d *deadlineTimer) deadline() (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.at, d.fired
}

// armed reports whether a timer is pending.
func (d *deadlineTimer) armed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.t != nil
}

// expire ends the sandbox at its deadline (the backstop, see above). It
// runs on the timer's goroutine.
func (s *Server) expire() {
	at, _ := s.deadline.deadline()
	s.mu.Lock()
	// Under mu, which init holds while it spawns the main command: either
	// the main command exists now, or no Init starts one from here on.
	s.expired = true
	main := s.main
	s.mu.Unlock()
	_, _ = fmt.Fprintf(s.log, "sbx-agent: the sandbox outlived its deadline (%s) with no server stopping it; ending it\n", at.UTC().Format(time.RFC3339))
	s.signalAll(syscall.SIGTERM)
	if main == nil {
		// An idle sandbox: record the end the server would read, as
		// the main command's exit would be.
		s.mainEnded(&sandbox.ExitStatus{Code: 128 + int(syscall.SIGTERM), Signal: "SIGTERM", TimedOut: true, At: time.Now()})
	}
	s.stop()
	grace := time.NewTimer(s.cfg.StopGrace)
	defer grace.Stop()
	select {
	case <-s.allEnded():
	case <-grace.C:
	}
	s.signalAll(syscall.SIGKILL)
}

// allEnded returns a channel closed once the main command and every exec
// have ended.
func (s *Server) allEnded() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		<-s.mainDone
		for _, p := range s.groups() {
			<-p.done
		}
		close(ch)
	}()
	return ch
}

// signalAll sends sig to every process of the sandbox. As PID 1 of the
// sandbox's pid namespace the agent reaches them all with kill(-1), also
// those that left their process group (setsid, daemons); kill(-1) spares
// the caller. Anywhere else (tests) kill(-1) would reach the whole host,
// so it signals only the process groups the agent started.
func (s *Server) signalAll(sig syscall.Signal) {
	if os.Getpid() == 1 {
		_ = syscall.Kill(-1, sig)
		return
	}
	s.forward(sig)
}
