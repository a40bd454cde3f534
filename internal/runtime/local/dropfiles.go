package local

import (
	"errors"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Bounds of dropDirty: the size from which a file is emptied (as the
// agent's for a removed file, internal/agent/droppages.go), and how many
// entries of a subvolume it looks at.
const (
	dropFileMin    = 16 << 20
	dropWalkLimit  = 4096
	dropRangeWhole = 0 // CachestatRange.Len 0: to the end of the file
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
// Only the first dropWalkLimit entries are looked at: a sandbox's layer
// is a few files as a rule, and one with many pays no more than that.
func dropDirty(dir string) {
	left := dropWalkLimit
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if left--; left < 0 {
			return filepath.SkipAll
		}
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if info, err := d.Info(); err != nil || info.Size() < dropFileMin {
			return nil
		}
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil
		}
		defer unix.Close(fd)
		var cs unix.Cachestat_t
		err = unix.Cachestat(uint(fd), &unix.CachestatRange{Len: dropRangeWhole}, &cs, 0)
		if err == nil && cs.Dirty == 0 {
			return nil // clean: the deletion frees it as it is
		}
		if err != nil && !errors.Is(err, unix.ENOSYS) {
			return nil
		}
		_ = unix.Ftruncate(fd, 0)
		return nil
	})
}
