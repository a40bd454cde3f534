package local

import (
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Bounds of dropDirty: the size from which a file is emptied (Reclaim's
// too), how many entries of a subvolume it looks at, and how deep.
const (
	dropFileMin   = 16 << 20
	dropWalkLimit = 4096
	dropDepth     = 32
)

// dropDirty empties the large files of a sandbox's writable layer that
// have dirty pages, before its subvolume is deleted; every process of the
// sandbox is gone by then, and no file of a subvolume has a name outside
// it.
//
// Deleting the subvolume frees its files' page cache unwritten, except
// that of a file writeback has begun on: btrfs holds such a file until
// all of the extent it began (up to 128 MiB) is written, and until then
// every dirty page it has, which the flusher writes back whole, up to half
// a minute later, for a sandbox that no longer exists, throttling every
// writer on the host meanwhile. Emptying the file drops its dirty pages
// and ends the extent without them.
//
// The layer is the sandbox's own: each name is opened from its
// directory's descriptor without following a symlink, and only a regular
// file is reopened for writing (as hostfs.go does with the state dir).
// Only the first dropWalkLimit entries, dropDepth dirs deep, are looked
// at: a sandbox's layer is a few files as a rule, and one with many pays
// no more than that.
func dropDirty(dir string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	left := dropWalkLimit
	dropDirtyIn(fd, dropDepth, &left)
}

// dropDirtyIn is dropDirty for the directory open as dirfd, which it
// closes.
func dropDirtyIn(dirfd, depth int, left *int) {
	d := os.NewFile(uintptr(dirfd), "")
	defer d.Close()
	entries, _ := d.ReadDir(*left + 1)
	for _, e := range entries {
		if *left--; *left < 0 {
			return
		}
		switch {
		case e.IsDir() && depth > 1:
			sub, err := unix.Openat(dirfd, e.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err == nil {
				dropDirtyIn(sub, depth-1, left)
			}
		case e.Type().IsRegular():
			emptyIfDirty(dirfd, e.Name())
		}
	}
}

// emptyIfDirty truncates the regular file name in dirfd if it is large
// and has dirty pages (or the kernel cannot say: cachestat(2) is 6.5's).
func emptyIfDirty(dirfd int, name string) {
	pfd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if unix.Fstat(pfd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size < dropFileMin {
		return
	}
	// The same inode, now for writing; a FIFO or device cannot be
	// swapped in.
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	var cs unix.Cachestat_t
	err = unix.Cachestat(uint(fd), &unix.CachestatRange{}, &cs, 0) // Len 0: the whole file
	if err == nil && cs.Dirty == 0 {
		return // clean: the deletion frees it as it is
	}
	if err != nil && !errors.Is(err, unix.ENOSYS) {
		return
	}
	_ = unix.Ftruncate(fd, 0)
}
