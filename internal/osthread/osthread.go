// Package osthread runs a goroutine on an OS thread of its own, for work
// that changes what belongs to a thread (its mount namespace, its cgroup)
// and so must never run anything else.
package osthread

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// Go runs body in a new goroutine locked to a thread other than the
// process's main one; the thread ends with body. Not the main thread: /proc
// shows its namespaces and cgroups as the process's, and Go never ends it.
func Go(body func()) {
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			body()
			return // still locked: the thread ends with the goroutine
		}
		// The main thread: while this goroutine holds it, the next one
		// runs on another.
		handed := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(handed)
			body()
		}()
		<-handed
		runtime.UnlockOSThread()
	}()
}

// Serve starts a thread (as Go does) that runs setup, then every function
// sent on the returned channel, in order, until the channel is closed; the
// thread ends then. If setup fails, the thread ends at once and Serve
// returns setup's error.
func Serve(setup func() error) (chan<- func(), error) {
	work := make(chan func())
	ready := make(chan error)
	Go(func() {
		if err := setup(); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for fn := range work {
			fn()
		}
	})
	if err := <-ready; err != nil {
		return nil, err
	}
	return work, nil
}
