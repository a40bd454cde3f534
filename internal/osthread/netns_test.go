package osthread

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestInNetns: fn runs in the namespace, and the caller's thread never
// leaves its own.
func TestInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (CAP_SYS_ADMIN) to make a network namespace")
	}
	nsc := make(chan *os.File, 1)
	errc := make(chan error, 1)
	Go(func() {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		f, err := os.Open("/proc/thread-self/ns/net")
		errc <- err
		nsc <- f
	})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	ns := <-nsc
	defer ns.Close()
	var want, got, inside unix.Stat_t
	if err := unix.Fstat(int(ns.Fd()), &want); err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := InNetns(ns, func() error { return unix.Stat("/proc/thread-self/ns/net", &inside) }); err != nil {
		t.Fatal(err)
	}
	if inside.Ino != want.Ino {
		t.Errorf("fn ran in namespace %d, want %d", inside.Ino, want.Ino)
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &got); err != nil || got.Ino == want.Ino {
		t.Errorf("the caller's thread is in the namespace (%v)", err)
	}
}
