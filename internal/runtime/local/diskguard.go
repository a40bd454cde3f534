package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// The pool image is sparse, and btrfs discards freed blocks back to it, so
// the pool's free space is only a promise that the data dir's filesystem
// must keep. If that filesystem fills up first, the loop device fails
// btrfs's writes, and a failed metadata write turns the whole pool
// read-only: every sandbox on it breaks at once. The guard keeps a reserve
// of free space on the data dir's filesystem: below it, creates are
// refused (DISK_POOL_FULL) and every sandbox's subvolume is frozen at the
// size it has (its qgroup limit lowered to what it references), so that
// sandboxes get EDQUOT on writes that would grow them while the pool stays
// healthy. Once the free space is back above twice the reserve, the limits
// are restored.

// DefaultDiskReserve is the free space the guard keeps on the data dir's
// filesystem when DiskPoolConfig.Reserve is 0.
const DefaultDiskReserve = 256 << 20

// guardInterval is how often Watch looks at the free space.
const guardInterval = 2 * time.Second

// frozenFile, in the data dir, keeps the limits a freeze replaced, so that
// a server restarted during a freeze restores them.
const frozenFile = "disk.frozen"

// diskGuard is the reserve-keeping state of an image-backed pool.
type diskGuard struct {
	hostDir string // the image's dir, on the filesystem whose space it keeps
	reserve int64  // bytes; <0 turns the guard off

	mu     sync.Mutex
	frozen map[uint64]uint64 // qgroup id → its max_referenced before the freeze (0: none)
	avail  int64             // the data dir's free bytes at the last look
}

// hostAvail returns the free bytes of the data dir's filesystem.
func (g *diskGuard) hostAvail() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(g.hostDir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", g.hostDir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// Frozen reports whether the pool's subvolumes are frozen for lack of free
// space on the data dir's filesystem.
func (p *DiskPool) Frozen() bool {
	if p.guard == nil {
		return false
	}
	p.guard.mu.Lock()
	defer p.guard.mu.Unlock()
	return p.guard.frozen != nil
}

// room refuses a new sandbox when the data dir's filesystem is below its
// reserve (the guard's) or the pool itself has less free space than the
// smallest disk limit.
func (p *DiskPool) room() error {
	if g := p.guard; g != nil && g.reserve >= 0 {
		avail, err := g.hostAvail()
		if err != nil {
			return err
		}
		if avail < g.reserve {
			return retryLater(sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonDiskPoolFull,
				"the server's data dir %s has %s free, below the %s it keeps so that the sandboxes' disk pool stays writable: no new sandbox until the operator frees space there",
				g.hostDir, humanBytes(avail), humanBytes(g.reserve)))
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p.dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", p.dir, err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < MinDiskBytes {
		return retryLater(sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonDiskPoolFull,
			"the server's disk pool for sandboxes %s is full (%s free): retry once sandboxes are deleted, or ask the operator for a larger pool (--disk-pool-bytes)",
			p.dir, humanBytes(free)))
	}
	return nil
}

// Admit refuses a create while the disk pool has no room (see room), so
// that the caller gets RESOURCE_EXHAUSTED DISK_POOL_FULL at once rather
// than a sandbox that fails.
func (r *Runtime) Admit() error {
	if r.cfg.Disk == nil {
		return nil
	}
	return r.cfg.Disk.room()
}

// retryLater gives a full-disk refusal a retry delay: space comes back as
// sandboxes end, or when the operator frees it.
func retryLater(e *sandbox.Error) *sandbox.Error {
	e.RetryAfter = time.Minute
	return e
}

// Watch keeps the guard's reserve until ctx ends: it looks at the data
// dir's free space every few seconds, freezes the sandboxes' subvolumes
// when it is below the reserve and thaws them when it is back above twice
// the reserve. A freeze left by an earlier server is taken over. It
// returns at once for a pool without an image or with the guard off.
func (p *DiskPool) Watch(ctx context.Context, log *slog.Logger) {
	g := p.guard
	if g == nil || g.reserve < 0 {
		return
	}
	if err := p.loadFrozen(); err != nil {
		log.Error("disk pool guard: read the limits of an earlier freeze", "file", filepath.Join(g.hostDir, frozenFile), "err", err)
	}
	t := time.NewTicker(guardInterval)
	defer t.Stop()
	for {
		if err := p.guardStep(log); err != nil {
			log.Error("disk pool guard", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// guardStep is one look of Watch.
func (p *DiskPool) guardStep(log *slog.Logger) error {
	g := p.guard
	avail, err := g.hostAvail()
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.avail = avail
	switch {
	case avail < g.reserve:
		n, err := p.freezeLocked()
		if n > 0 {
			log.Warn("the data dir's filesystem is below its reserve: sandboxes' disks are frozen at their size (writes that grow them fail with EDQUOT) and creates are refused until space is freed",
				"dir", g.hostDir, "free", avail, "reserve", g.reserve, "sandboxes", n)
		}
		return err
	case g.frozen != nil && avail >= 2*g.reserve:
		err := p.thawLocked()
		if err == nil {
			log.Info("the data dir's filesystem has room again: sandboxes' disk limits are restored", "dir", g.hostDir, "free", avail)
		}
		return err
	}
	return nil
}

// freezeLocked lowers every sandbox qgroup's limit to what it references
// now, remembering the old limit; qgroups frozen already (and ones made
// since: a create is refused while below the reserve) are left alone. It
// returns how many it froze.
func (p *DiskPool) freezeLocked() (int, error) {
	g := p.guard
	names, err := p.qgroups()
	if err != nil {
		return 0, err
	}
	sysDir, fd, err := p.sysfs()
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	if g.frozen == nil {
		g.frozen = map[uint64]uint64{}
	}
	var errs []error
	n := 0
	for _, name := range names {
		id, err := strconv.ParseUint(strings.TrimPrefix(name, "0_"), 10, 64)
		if err != nil {
			continue
		}
		if _, done := g.frozen[id]; done {
			continue
		}
		old, err1 := readUint(filepath.Join(sysDir, "qgroups", name, "max_referenced"))
		used, err2 := readUint(filepath.Join(sysDir, "qgroups", name, "referenced"))
		if err := errors.Join(err1, err2); err != nil {
			if !errors.Is(err, os.ErrNotExist) { // deleted meanwhile
				errs = append(errs, err)
			}
			continue
		}
		if old != 0 && old <= used {
			continue // at its limit already: nothing to freeze
		}
		// A limit below what the qgroup references is allowed: every write
		// that needs a new extent then fails with EDQUOT.
		if err := qgroupLimitID(fd, id, max(used, 1)); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("freeze qgroup %s: %w", name, err))
			}
			continue
		}
		g.frozen[id] = old
		n++
	}
	return n, errors.Join(append(errs, p.saveFrozenLocked())...)
}

// thawLocked gives every frozen qgroup its old limit back.
func (p *DiskPool) thawLocked() error {
	g := p.guard
	fd, err := unix.Open(p.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var errs []error
	for id, old := range g.frozen {
		if err := qgroupLimitID(fd, id, old); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("restore the limit of qgroup 0/%d: %w", id, err))
			continue
		}
		delete(g.frozen, id)
	}
	if len(g.frozen) == 0 {
		g.frozen = nil
	}
	return errors.Join(append(errs, p.saveFrozenLocked())...)
}

// sysfs opens the pool's root and returns its btrfs sysfs dir with the fd.
func (p *DiskPool) sysfs() (string, int, error) {
	fd, err := unix.Open(p.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", -1, err
	}
	dir, err := btrfsSysfs(fd)
	if err != nil {
		unix.Close(fd)
		return "", -1, err
	}
	return dir, fd, nil
}

// saveFrozenLocked writes the frozen limits to the data dir, or removes
// the file when nothing is frozen. It is small and written in place of the
// old one (rename), so a crash leaves the old or the new.
func (p *DiskPool) saveFrozenLocked() error {
	path := filepath.Join(p.guard.hostDir, frozenFile)
	if p.guard.frozen == nil {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.Marshal(p.guard.frozen)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	// A full filesystem may refuse even this; the freeze holds anyway, and
	// only a restart before the thaw would lose the old limits.
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("remember the frozen limits: %w", err)
	}
	return os.Rename(tmp, path)
}

// loadFrozen takes over a freeze that an earlier server left.
func (p *DiskPool) loadFrozen() error {
	b, err := os.ReadFile(filepath.Join(p.guard.hostDir, frozenFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var m map[uint64]uint64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	p.guard.mu.Lock()
	defer p.guard.mu.Unlock()
	if len(m) > 0 {
		p.guard.frozen = m
	}
	return nil
}

// readUint reads a sysfs file holding one unsigned number.
func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// qgroupLimitID limits the referenced bytes of level-0 qgroup id, in the
// btrfs fd is in; 0 removes the limit.
func qgroupLimitID(fd int, id, bytes uint64) error {
	a := &btrfsQgroupLimitArgs{qgroupID: id, flags: btrfsLimitMaxRfer, maxRfer: bytes}
	if bytes == 0 {
		// No limit: max_rfer = all ones, as btrfs-progs' "none" sets it.
		a.maxRfer = ^uint64(0)
	}
	return btrfsIoctl(fd, btrfsIocQgroupLimit, unsafe.Pointer(a))
}

// humanBytes formats a measured size, such as free space.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}
