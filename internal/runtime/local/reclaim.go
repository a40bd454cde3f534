package local

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Reclaim empties, until ctx ends, the large files of the pool that lose
// their last name while btrfs still holds them, so that their dirty pages
// are dropped instead of written back: every removal in a running sandbox
// (the agent's Remove, a write's rename over a file, a process's own rm);
// a sandbox's deletion, which reports no inode, has dropDirty.
//
// btrfs keeps a file that writeback has begun on until all of the extent
// it began (up to 128 MiB) is written, and with it every dirty page the
// file has, which the flusher writes back whole, up to half a minute later
// (docs/BENCHMARKS.md, file round trip). fanotify reports each inode of
// the pool that loses its last link and is let go (FAN_DELETE_SELF, with
// its file handle); Reclaim opens the ones still there by handle and
// empties them when they are regular, of dropFileMin or more and have
// dirty pages (cachestat). No process has such a file open or mapped: the
// event comes only when the inode's last dentry goes, which an open file
// or a mapping holds (through overlayfs, the upper file's), and the write
// lease Reclaim takes before truncating would fail for any opener it
// missed (one by handle). A file freed at its unlink, the usual case, is
// gone by then (ESTALE) and costs one failed open.
//
// A kernel without fanotify's file handles (before 5.1) or its marks on a
// btrfs pool logs why once and leaves removals as they are.
//
// Only a pool of its own (the image) is watched: a pool in a btrfs data
// dir shares its filesystem with the host's other files, which are not
// sbx's to touch.
func (p *DiskPool) Reclaim(ctx context.Context, log *slog.Logger) {
	if p.image == "" {
		log.Info("disk pool: removed files are not reclaimed, the pool shares the data dir's btrfs", "pool", p.dir)
		return
	}
	fan, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_REPORT_FID|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		log.Warn("disk pool: removed files are not reclaimed (fanotify)", "err", err)
		return
	}
	f := os.NewFile(uintptr(fan), "fanotify")
	defer f.Close()
	if err := unix.FanotifyMark(fan, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, unix.FAN_DELETE_SELF, unix.AT_FDCWD, p.dir); err != nil {
		log.Warn("disk pool: removed files are not reclaimed (fanotify mark)", "pool", p.dir, "err", err)
		return
	}
	mnt, err := unix.Open(p.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		log.Warn("disk pool: removed files are not reclaimed", "err", err)
		return
	}
	defer unix.Close(mnt)
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Warn("disk pool: removed files are no longer reclaimed", "err", err)
			return
		}
		eachHandle(buf[:n], func(h unix.FileHandle) {
			if emptyRemoved(mnt, h) {
				p.reclaimed.Add(1)
			}
		})
	}
}

// The parts of a fanotify event that Reclaim reads: struct
// fanotify_event_metadata (24 bytes) and, after it, info records of a
// header (type, pad, length) and for FAN_EVENT_INFO_TYPE_FID a filesystem
// id (8 bytes) and a struct file_handle (bytes, type, handle).
const (
	fanMetadataLen  = 24
	fanInfoFIDFixed = 4 + 8 + 8
)

// eachHandle calls fn with the file handle of each event in b.
func eachHandle(b []byte, fn func(unix.FileHandle)) {
	for len(b) >= fanMetadataLen {
		evLen := int(binary.NativeEndian.Uint32(b))
		metaLen := int(binary.NativeEndian.Uint16(b[6:]))
		if evLen < fanMetadataLen || evLen > len(b) || metaLen < fanMetadataLen || metaLen > evLen {
			return
		}
		mask := binary.NativeEndian.Uint64(b[8:])
		if b[4] == unix.FANOTIFY_METADATA_VERSION && mask&unix.FAN_Q_OVERFLOW == 0 {
			for info := b[metaLen:evLen]; len(info) >= 4; {
				infoLen := int(binary.NativeEndian.Uint16(info[2:]))
				if infoLen < 4 || infoLen > len(info) {
					break
				}
				if info[0] == unix.FAN_EVENT_INFO_TYPE_FID && infoLen >= fanInfoFIDFixed {
					size := int(binary.NativeEndian.Uint32(info[12:]))
					typ := int32(binary.NativeEndian.Uint32(info[16:]))
					if size <= infoLen-fanInfoFIDFixed {
						fn(unix.NewFileHandle(typ, info[fanInfoFIDFixed:fanInfoFIDFixed+size]))
					}
				}
				info = info[infoLen:]
			}
		}
		b = b[evLen:]
	}
}

// emptyRemoved truncates the file of handle h on the filesystem of mnt if
// it has no name left, is large, has dirty pages and no one else has it
// open, and reports whether it did.
func emptyRemoved(mnt int, h unix.FileHandle) bool {
	pfd, err := unix.OpenByHandleAt(mnt, h, unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		return false // freed already: the usual case
	}
	var st unix.Stat_t
	err = unix.Fstat(pfd, &st)
	unix.Close(pfd)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 0 || st.Size < dropFileMin {
		return false
	}
	// The same inode (a handle names one inode of one generation), now
	// for writing: a regular file, so the open has no side effect.
	fd, err := unix.OpenByHandleAt(mnt, h, unix.O_RDWR|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC)
	if err != nil {
		return false
	}
	defer unix.Close(fd) // releases the lease too
	var cs unix.Cachestat_t
	err = unix.Cachestat(uint(fd), &unix.CachestatRange{}, &cs, 0)
	if err == nil && cs.Dirty == 0 || err != nil && !errors.Is(err, unix.ENOSYS) {
		return false
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
		return false // opened meanwhile
	}
	return unix.Ftruncate(fd, 0) == nil
}
