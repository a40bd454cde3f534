package osthread

import (
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
