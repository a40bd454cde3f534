package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// dropPagesMin is the size from which a file's last unlink by the agent
// also empties it (unlinkDropping).
const dropPagesMin = 16 << 20

// unlinkDropping runs unlink, which takes path's name away (a remove, or a
// rename over it), and empties the file that name had when that was its
// last name and no other process has it open, so that its page cache is
// freed at once, unwritten.
//
// The kernel frees an unlinked file's pages when its last reference goes,
// which is usually the unlink itself. But on btrfs, the disk pool's
// filesystem, each extent that writeback has begun to write holds a
// reference to its file until all of that extent is written, and
// background writeback stops part way through extents of up to 128 MiB.
// A large file removed in between keeps every dirty page it has until the
// flusher comes back to it, and that writes the whole file, up to half a
// minute later: a 1 GiB file written and removed at once cost 1 GiB of disk
// writes, and the next writer in any sandbox meets the dirty-page limit
// (docs/BENCHMARKS.md, file round trip). Emptying the file instead drops
// its dirty pages and lets btrfs end the half-written extent without the
// rest.
//
// A process with the file open or mapped would see it emptied (a mapping
// faults), so this is done only under a write lease, which the kernel
// grants only while no other open file refers to the file, only while no
// lease break is pending, that is while nobody is waiting to open it, and
// only when no process maps it (mapped); a file of another user is leased
// as that user (leaseAs). A file that cannot be leased, one that is small,
// not regular, has other names or is not in the upper layer (upperDev), is
// only unlinked.
func unlinkDropping(path string, unlink func() error) error {
	return rootDropper.unlink(path, unlink)
}

// rootDropper empties files of the sandbox's root filesystem.
var rootDropper = &pageDropper{root: "/", proc: "/proc"}

// pageDropper is unlinkDropping for the files of one overlay mount.
type pageDropper struct {
	root string
	proc string // where the processes that may map root's files are
	once sync.Once
	dev  uint64 // see upperDev
	// maps is how /proc/PID/maps names root's device ("00:2c ").
	maps string
}

// upperDev is the device number that files made in root's upper layer show
// (for an overlay whose layers are on other filesystems than its upper
// layer, which sbx's are), or 0 when there is none to tell them by: root
// is no overlay, is read-only, or its kernel cannot make an O_TMPFILE
// there.
//
// Only such files are emptied. Opening a file of a lower layer for writing
// would copy all of it up first; a file copied up shows its lower file's
// device, and is left alone too.
func (d *pageDropper) upperDev() uint64 {
	d.once.Do(func() {
		// An unnamed file in the root directory, whose overlay dir is
		// always in the upper layer, gone again at close.
		fd, err := unix.Open(d.root, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return
		}
		defer unix.Close(fd)
		var st, rst unix.Stat_t
		if unix.Fstat(fd, &st) != nil || unix.Stat(d.root, &rst) != nil || st.Dev == rst.Dev {
			return
		}
		d.dev = st.Dev
		d.maps = fmt.Sprintf("%02x:%02x ", unix.Major(rst.Dev), unix.Minor(rst.Dev))
	})
	return d.dev
}

func (d *pageDropper) unlink(path string, unlink func() error) error {
	var st unix.Stat_t
	if unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 ||
		st.Size < dropPagesMin || st.Dev != d.upperDev() {
		return unlink()
	}
	// Writable, since ftruncate needs that; O_NONBLOCK fails rather than
	// waits where another process holds a lease.
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return unlink()
	}
	defer unix.Close(fd)
	var fst unix.Stat_t
	if unix.Fstat(fd, &fst) != nil || fst.Dev != st.Dev || fst.Ino != st.Ino {
		return unlink()
	}
	if leaseAs(fd, int(fst.Uid)) != nil {
		return unlink()
	}
	defer unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
	if err := unlink(); err != nil {
		return err
	}
	// Still the only opener (a pending break means another is waiting to
	// open it), and the name was this file's last.
	lease, err := unix.FcntlInt(uintptr(fd), unix.F_GETLEASE, 0)
	if err == nil && lease == unix.F_WRLCK && unix.Fstat(fd, &fst) == nil && fst.Nlink == 0 && !d.mapped(fst.Ino) {
		_ = unix.Ftruncate(fd, 0)
	}
	return nil
}

// leaseAs takes a write lease on fd, as the file's owner (uid) where the
// agent is not: the kernel grants a lease to the file's owner or to
// CAP_LEASE, which sandboxes lack, and a sandbox's user may own the file.
// The filesystem uid is the calling thread's alone, so the goroutine holds
// its thread meanwhile.
func leaseAs(fd, uid int) error {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_WRLCK)
	if !errors.Is(err, unix.EACCES) {
		return err
	}
	runtime.LockOSThread()
	prev, serr := unix.SetfsuidRetUid(uid)
	if serr != nil || prev == uid {
		runtime.UnlockOSThread()
		return err
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_WRLCK)
	_, _ = unix.SetfsuidRetUid(prev)
	// An invalid uid changes nothing and returns the current one. A
	// thread left with another fsuid stays locked, and ends with this
	// goroutine.
	if cur, _ := unix.SetfsuidRetUid(-1); cur == prev {
		runtime.UnlockOSThread()
	}
	return err
}

// mapped reports whether a process this agent sees may have the upper
// file of inode number ino mapped. A mapping of an overlay file keeps only
// the upper file open, which the lease does not see; /proc/PID/maps names
// it by the overlay's device and the upper file's inode number. A process
// whose maps cannot be read counts as mapping it; a lower file's mapping
// with the same number costs only the emptying.
func (d *pageDropper) mapped(ino uint64) bool {
	procs, err := os.ReadDir(d.proc)
	if err != nil {
		return true
	}
	want := []byte(d.maps + strconv.FormatUint(ino, 10) + " ")
	for _, p := range procs {
		if p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		f, err := os.Open(filepath.Join(d.proc, p.Name(), "maps"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // exited
			}
			return true
		}
		found, err := mapsHave(f, want)
		f.Close()
		if found || err != nil && !errors.Is(err, unix.ESRCH) {
			return true
		}
	}
	return false
}

// mapsHave reports whether a line of a maps file has want ("DEV INODE ")
// in its device and inode columns: "START-END PERMS OFFSET DEV INODE
// [PATH]".
func mapsHave(r io.Reader, want []byte) (bool, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		// Skip the three columns before the device.
		i := 0
		for n := 0; n < 3 && i >= 0; n++ {
			j := bytes.IndexByte(line[i:], ' ')
			if j < 0 {
				i = -1
				break
			}
			i += j + 1
		}
		if i > 0 && bytes.HasPrefix(line[i:], want) {
			return true, nil
		}
	}
	return false, sc.Err()
}
