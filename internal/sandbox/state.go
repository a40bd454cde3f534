package sandbox

import "time"

// State is where a sandbox is in its lifecycle:
//
//	PENDING → CREATING → RUNNING → TERMINATING → COMPLETED | FAILED | TERMINATED
type State string

// The states.
const (
	StatePending     State = "PENDING"
	StateCreating    State = "CREATING"
	StateRunning     State = "RUNNING"
	StateTerminating State = "TERMINATING"
	// StateCompleted: the main command exited 0.
	StateCompleted State = "COMPLETED"
	// StateFailed: the main command exited non-zero, or the sandbox could not start or was lost.
	StateFailed State = "FAILED"
	// StateTerminated: stopped by its user, its session or its lifetime.
	StateTerminated State = "TERMINATED"
)

// States lists every state in lifecycle order.
var States = []State{StatePending, StateCreating, StateRunning, StateTerminating, StateCompleted, StateFailed, StateTerminated}

// Terminal reports whether s is an end state.
func (s State) Terminal() bool {
	return s == StateCompleted || s == StateFailed || s == StateTerminated
}

// Valid reports whether s is one of the known states.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// Reasons for state changes. Each is recorded with the transition.
const (
	// ReasonRequested: the sandbox was created on request.
	ReasonRequested = "requested"
	// ReasonStarted: the container and its agent are up.
	ReasonStarted = "started"
	// ReasonStoppedByUser: Stop was called.
	ReasonStoppedByUser = "stopped by user"
	// ReasonSessionClosed: its session was closed or its lease ran out.
	ReasonStoppedBySession = "session closed"
	// ReasonLifetime: max_lifetime_seconds ran out.
	ReasonLifetime = "lifetime"
	// ReasonMainExited: the main command exited.
	ReasonMainExited = "main command exited"
	// ReasonStartFailed: the image, the container or the main command could not start.
	ReasonStartFailed = "start failed"
	// ReasonLost: the sandbox's container disappeared (e.g. host reboot).
	ReasonLost = "lost"
)

// Transition is one recorded state change.
type Transition struct {
	State  State
	Reason string
	At     time.Time
}
