package agent

import (
	"errors"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// newTestTimer returns a deadline timer whose firings are counted on fired.
func newTestTimer() (*deadlineTimer, chan struct{}) {
	fired := make(chan struct{}, 4)
	return &deadlineTimer{fire: func() { fired <- struct{}{} }}, fired
}

// waitFired waits for one firing (a minute at most: the test fails, it
// does not time anything).
func waitFired(t *testing.T, fired chan struct{}) {
	t.Helper()
	select {
	case <-fired:
	case <-time.After(time.Minute):
		t.Fatal("the deadline timer did not fire")
	}
}

func TestDeadlineTimerFires(t *testing.T) {
	d, fired := newTestTimer()
	d.set(time.Now().Add(10 * time.Millisecond))
	waitFired(t, fired)
	if _, ok := d.deadline(); !ok || d.armed() {
		t.Fatalf("after firing: fired %v, armed %v", ok, d.armed())
	}
	// A deadline already past fires at once; and once fired, nothing re-arms.
	d2, fired2 := newTestTimer()
	d2.set(time.Now().Add(-time.Hour))
	waitFired(t, fired2)
	d2.set(time.Now())
	if d2.armed() {
		t.Fatal("a fired timer was re-armed")
	}
}

func TestDeadlineTimerRearms(t *testing.T) {
	d, fired := newTestTimer()
	// Moved later: the first deadline is dropped.
	d.set(time.Now().Add(-time.Second))
	far := time.Now().Add(time.Hour)
	d.set(far)
	if at, ok := d.deadline(); !at.Equal(far) || ok || !d.armed() {
		t.Fatalf("after moving later: at %v fired %v armed %v", at, ok, d.armed())
	}
	// Moved earlier: it fires for the new one, once.
	d.set(time.Now().Add(10 * time.Millisecond))
	waitFired(t, fired)
	select {
	case <-fired:
		t.Fatal("fired twice")
	default:
	}
}

// A stale timer func (one that started just before a re-arm) must not fire.
func TestDeadlineTimerStaleGeneration(t *testing.T) {
	d, fired := newTestTimer()
	d.set(time.Now().Add(time.Hour))
	d.mu.Lock()
	stale := d.gen
	d.mu.Unlock()
	d.set(time.Now().Add(2 * time.Hour))
	d.expire(stale)
	select {
	case <-fired:
		t.Fatal("a stale generation fired")
	default:
	}
	if _, ok := d.deadline(); ok {
		t.Fatal("a stale generation marked the timer fired")
	}
}

func TestDeadlineTimerUnset(t *testing.T) {
	d, _ := newTestTimer()
	if at, ok := d.deadline(); !at.IsZero() || ok || d.armed() {
		t.Fatalf("new timer: at %v fired %v armed %v", at, ok, d.armed())
	}
	d.set(time.Now().Add(time.Hour))
	d.set(time.Time{})
	if at, ok := d.deadline(); !at.IsZero() || ok || d.armed() {
		t.Fatalf("after unset: at %v fired %v armed %v", at, ok, d.armed())
	}
	// An agent whose Init carries no deadline has none armed.
	s, err := New(Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.init(sandbox.ImageConfig{}, sandbox.StartSpec{}); err != nil {
		t.Fatal(err)
	}
	if s.deadline.armed() {
		t.Fatal("an Init without a deadline armed one")
	}
}

func TestDeadlineWire(t *testing.T) {
	at := time.Unix(1_800_000_000, 123)
	if got := startFromWire(startToWire(sandbox.StartSpec{Deadline: at})).Deadline; !got.Equal(at) {
		t.Fatalf("deadline round trip: %v, want %v", got, at)
	}
	if got := startFromWire(startToWire(sandbox.StartSpec{})).Deadline; !got.IsZero() {
		t.Fatalf("no deadline round trip: %v", got)
	}
}

// TestBackstopInProcess runs the backstop in the test process, so that
// `go test -race` sees the timer, the Init that re-arms it and the end of
// the sandbox together (the other tests run the agent binary).
func TestBackstopInProcess(t *testing.T) {
	sock, ctx, stop := runInProcess(t, Config{StopGrace: 100 * time.Millisecond})
	c := Dial(sock)
	defer c.Close()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Init(ctx, InitSpec{Start: sandbox.StartSpec{Command: []string{"sleep", "1000"}, Deadline: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	// Moved earlier by a deadline-only Init, as a claim's hand-over does.
	if err := c.Init(ctx, InitSpec{Start: sandbox.StartSpec{Deadline: time.Now().Add(50 * time.Millisecond)}}); err != nil {
		t.Fatal(err)
	}
	st, err := c.WaitMain(ctx)
	if err != nil || !st.TimedOut {
		t.Fatalf("main command's end: %+v, %v; want TimedOut", st, err)
	}
	if err := stop(); !errors.Is(err, ErrDeadline) {
		t.Fatalf("Run returned %v, want ErrDeadline", err)
	}
}
