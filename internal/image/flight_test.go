package image

import (
	"context"
	"errors"
	"testing"
)

func TestGroupCancellation(t *testing.T) {
	var g group[int]
	release := make(chan struct{})
	started := make(chan struct{})
	work := func(ctx context.Context, emit func(Progress)) (int, error) {
		close(started)
		select {
		case <-release:
			emit(Progress{Status: StatusDone})
			return 42, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	// One impatient waiter leaving does not stop the work for the other.
	ctx1, cancel1 := context.WithCancel(bg)
	res := make(chan error, 1)
	go func() { _, err := g.do(ctx1, "k", nil, work); res <- err }()
	<-started
	var got []Progress
	done := make(chan int)
	go func() {
		v, _ := g.do(bg, "k", func(p Progress) { got = append(got, p) }, nil)
		done <- v
	}()
	for { // wait until the second waiter joined
		g.mu.Lock()
		n := g.m["k"].waiters
		g.mu.Unlock()
		if n == 2 {
			break
		}
	}
	cancel1()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter got %v", err)
	}
	close(release)
	if v := <-done; v != 42 || len(got) != 1 {
		t.Fatalf("second waiter got %d, events %v", v, got)
	}

	// When every waiter leaves, the work is cancelled and finished before
	// the last one returns.
	ended := make(chan struct{})
	ctx2, cancel2 := context.WithCancel(bg)
	started = make(chan struct{})
	go func() { <-started; cancel2() }()
	_, err := g.do(ctx2, "k2", nil, func(ctx context.Context, _ func(Progress)) (int, error) {
		close(started)
		<-ctx.Done()
		close(ended)
		return 0, ctx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	select {
	case <-ended:
	default:
		t.Fatal("work still running after its last waiter left")
	}
}
