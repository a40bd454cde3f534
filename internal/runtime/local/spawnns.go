package local

import (
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/moby/sys/mountinfo"
	"github.com/sbx-run/sbx/internal/osthread"
	"golang.org/x/sys/unix"
)

// A sandbox's root filesystem is mounted, and its OCI runtime started, in a
// mount namespace of the sandbox's own, copied from the server's, rather
// than in the server's. The OCI runtime makes the container's mount
// namespace by copying the one it starts in, and after pivot_root unmounts
// every copied mount but the root: with each live sandbox's overlay mounted
// in the server's namespace, every create copied and unmounted one mount
// per live sandbox (crun run with 1000 mounts around it: 5.5 against 3.8 ms
// of CPU, 7.2 against 4.6 ms to exit). In a namespace of its own the
// runtime copies the server's few mounts and the sandbox's one; the
// container's copy of the overlay is then the only one, so it goes when the
// container does, and the server's namespace never holds a sandbox's mount.
//
// A thread's mount namespace is its own to change once it shares no
// filesystem information with the process's other threads
// (unshare(CLONE_FS)), and what it starts inherits it. So each create runs
// its mount and its `run` on a spawner: a thread locked to a goroutine,
// which enters the server's namespace (setns) and copies it (unshare
// CLONE_NEWNS) for each sandbox. Spawners are kept for reuse, as making a
// thread costs about 100 µs of CPU here.

// maxIdleSpawners bounds the threads kept idle between creates.
const maxIdleSpawners = 8

var spawners struct {
	once sync.Once
	err  error
	// home is the process's mount namespace (the server's), homeNet its
	// network namespace (a spawner enters a sandbox's to mount its sysfs).
	home, homeNet *os.File
	// private: no mount of home propagates anywhere (Go made the
	// namespace of EnterMountNamespace's child private), so its copies
	// need not be made private again.
	private bool
	idle    chan *spawner
}

// spawner is a thread that runs functions in fresh mount namespaces.
type spawner struct {
	work chan<- func()
}

// inOwnMountNS runs fn on a thread whose mount namespace is a fresh copy
// of the process's, shared with nothing else; whatever fn starts (an OCI
// runtime) inherits it. fn's mounts go with that namespace once nothing of
// fn's is in it any more.
func inOwnMountNS(fn func() error) error {
	spawners.once.Do(func() {
		f, err := os.Open("/proc/self/ns/mnt")
		if err != nil {
			spawners.err = fmt.Errorf("open the server's mount namespace: %w", err)
			return
		}
		spawners.home = f
		if spawners.homeNet, err = os.Open("/proc/self/ns/net"); err != nil {
			spawners.err = fmt.Errorf("open the server's network namespace: %w", err)
			return
		}
		spawners.private = allMountsPrivate()
		spawners.idle = make(chan *spawner, maxIdleSpawners)
	})
	if spawners.err != nil {
		return spawners.err
	}
	var s *spawner
	select {
	case s = <-spawners.idle:
	default:
		var err error
		if s, err = newSpawner(); err != nil {
			return err
		}
	}
	var err error
	home := false
	done := make(chan struct{})
	s.work <- func() {
		defer close(done)
		if err = freshMountNS(); err == nil {
			err = fn()
		}
		// Back home, so that the sandbox's namespace (and the mounts in
		// it) goes now, not when this thread next works.
		home = unix.Setns(int(spawners.home.Fd()), unix.CLONE_NEWNS) == nil &&
			unix.Setns(int(spawners.homeNet.Fd()), unix.CLONE_NEWNET) == nil
	}
	<-done
	if !home {
		close(s.work) // its thread ends with its goroutine
		return err
	}
	select {
	case spawners.idle <- s:
	default:
		close(s.work)
	}
	return err
}

// newSpawner starts a spawner's thread.
func newSpawner() (*spawner, error) {
	work, err := osthread.Serve(func() error {
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			return fmt.Errorf("unshare the filesystem information of a spawner thread: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &spawner{work: work}, nil
}

// freshMountNS puts the calling (locked, unshared) thread into a new copy
// of the process's mount namespace.
func freshMountNS() error {
	if err := unix.Setns(int(spawners.home.Fd()), unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("enter the server's mount namespace: %w", err)
	}
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("copy the server's mount namespace for a sandbox: %w", err)
	}
	if !spawners.private {
		// The server shares mounts with the host (it runs in the host's
		// namespace, e.g. with runc): nothing mounted here may reach it.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("make a sandbox's mount namespace private: %w", err)
		}
	}
	return nil
}

// allMountsPrivate reports whether no mount of this process's namespace
// has shared propagation.
func allMountsPrivate() bool {
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return false
	}
	for _, in := range infos {
		if strings.Contains(in.Optional, "shared:") {
			return false
		}
	}
	return true
}
