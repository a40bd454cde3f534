package agent

import (
	"runtime"
	"sync"
)

// spareThreads is how many threads the agent makes, idle, before any
// sandbox process runs. The Go runtime needs a thread whenever a goroutine
// blocks in the kernel while others are runnable (the signal receiver
// does, on every SIGCHLD), and takes an idle one when it has one, else
// asks the kernel for a new one, and aborts the whole agent ("fatal error:
// newosproc") when the kernel refuses. A sandbox that fills its pids
// limit (a fork bomb: every thread counts) makes the kernel refuse, and
// the agent died with it in 1 of 5 runs of TestForkBombStopsAtPidsLimit.
// Threads made while the limit is far keep it alive: the runtime never
// frees an idle thread, and the agent has never needed more than a few at
// once (about 6 in the failures).
const spareThreads = 8

var spareOnce sync.Once

// makeSpareThreads has the Go runtime make spareThreads threads (once):
// as many goroutines each hold a thread (LockOSThread) until all of them
// have one, then let go, leaving the threads idle for the runtime to use.
func makeSpareThreads() {
	spareOnce.Do(func() {
		var held, done sync.WaitGroup
		release := make(chan struct{})
		held.Add(spareThreads)
		done.Add(spareThreads)
		for i := 0; i < spareThreads; i++ {
			go func() {
				defer done.Done()
				runtime.LockOSThread()
				held.Done()
				<-release
				// Unlocked before the goroutine ends: the runtime keeps the
				// thread (one that ends locked is destroyed).
				runtime.UnlockOSThread()
			}()
		}
		held.Wait()
		close(release)
		done.Wait()
	})
}
