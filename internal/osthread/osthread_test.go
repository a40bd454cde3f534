package osthread

import (
	"errors"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestGoNeverOnMainThread: body runs off the main thread, also when the
// goroutine that starts it is locked to the main thread.
func TestGoNeverOnMainThread(t *testing.T) {
	for range 20 {
		tid := make(chan int)
		Go(func() { tid <- unix.Gettid() })
		if <-tid == unix.Getpid() {
			t.Fatal("body ran on the main thread")
		}
	}
	done := make(chan int)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid := make(chan int)
		Go(func() { tid <- unix.Gettid() })
		done <- <-tid
	}()
	if <-done == unix.Getpid() {
		t.Fatal("body ran on the main thread")
	}
}

// TestServe: setup and every function sent run on one thread, not the
// main one, in order; a failed setup is returned.
func TestServe(t *testing.T) {
	tids := make(chan int, 4)
	work, err := Serve(func() error { tids <- unix.Gettid(); return nil })
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		done := make(chan struct{})
		work <- func() { tids <- unix.Gettid(); close(done) }
		<-done
	}
	close(work)
	first := <-tids
	if first == unix.Getpid() {
		t.Error("Serve ran on the main thread")
	}
	for range 3 {
		if tid := <-tids; tid != first {
			t.Errorf("a function ran on thread %d, setup on %d", tid, first)
		}
	}
	if _, err := Serve(func() error { return errSetup }); err != errSetup {
		t.Errorf("Serve with a failing setup: %v, want %v", err, errSetup)
	}
}

var errSetup = errors.New("setup failed")
