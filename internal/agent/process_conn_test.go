package agent_test

import (
	"sync/atomic"
	"testing"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// TestExecReusesConnection checks that execs one after the other share the
// client's connections: an exec stream read to its end hands its
// connection to the next exec instead of closing it.
func TestExecReusesConnection(t *testing.T) {
	a := startAgent(t)
	var dials atomic.Int32
	c := agent.DialState(a.stateDir, func(int) error { dials.Add(1); return nil })
	defer c.Close()
	for i := 0; i < 20; i++ {
		if r := run(t, c, sandbox.ExecSpec{Command: []string{"sh", "-c", "echo $0", "x"}}); r.stdout != "x\n" || r.exit.Code != 0 {
			t.Fatalf("exec %d: %+v", i, r)
		}
	}
	if _, err := c.Processes(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// One connection for the event streams, one (HTTP/2) for the rest.
	if n := dials.Load(); n > 2 {
		t.Fatalf("20 execs one after the other dialed the agent %d times, want at most 2", n)
	}
}

// TestExecExitDespiteOpenOutput checks that a background child keeping
// stdout open does not hold back the exit event of the process that
// started it: it comes after the drain bound, with the output so far.
func TestExecExitDespiteOpenOutput(t *testing.T) {
	a := startAgent(t)
	r := run(t, a.c, sandbox.ExecSpec{Command: []string{"sh", "-c", "sleep 30 & echo hi; exit 4"}})
	if r.stdout != "hi\n" || r.exit.Code != 4 {
		t.Fatalf("got %+v", r)
	}
}
