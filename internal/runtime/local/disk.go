package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// The bounds of a sandbox's disk limit (Resources.DiskBytes) and of the
// pool image.
const (
	// MinDiskBytes leaves room for the subvolume's own metadata and a
	// small writable layer.
	MinDiskBytes = 16 << 20
	MaxDiskBytes = 1 << 40
	// MinDiskPoolBytes and MaxDiskPoolBytes bound the pool image, and its
	// automatic size (half the free space when it is made).
	MinDiskPoolBytes = 1 << 30
	MaxDiskPoolBytes = 16 << 40
)

// DiskPoolConfig says where a DiskPool lives.
type DiskPoolConfig struct {
	// DataDir is the server's data dir. The pool is <DataDir>/disk: a
	// directory when DataDir is on btrfs, else the mount point of the
	// btrfs image <DataDir>/disk.img.
	DataDir string
	// Size is the image's size when it is made (sparse); 0 is half the
	// free space of DataDir's filesystem, within MinDiskPoolBytes and
	// MaxDiskPoolBytes. An existing image keeps its size.
	Size int64
	// NoMount refuses to mount the image, only finding an existing mount:
	// set in a process whose mounts are private (see EnterMountNamespace),
	// since a mount there would die with it while containers still use it.
	NoMount bool
	// Reserve is the free space kept on DataDir's filesystem for an
	// image-backed pool (diskguard.go): 0 is DefaultDiskReserve, below 0
	// turns the guard off.
	Reserve int64
}

// DiskPool is a btrfs filesystem with quotas on, in which each sandbox's
// writable layer is a subvolume with a qgroup limit: writing past it fails
// with EDQUOT, and deleting it is one ioctl. An image-backed pool also
// bounds the disk all sandboxes take together. The pool stays mounted when
// the server exits (sandboxes outlive it) and a restarted server reuses
// the mount.
type DiskPool struct {
	dir    string
	image  string     // "" when the data dir is btrfs itself
	device string     // the loop device of image
	guard  *diskGuard // nil when the data dir is btrfs itself
	// reclaimed counts the removed files Reclaim emptied.
	reclaimed atomic.Int64
}

// Dir is where the sandboxes' subvolumes are.
func (p *DiskPool) Dir() string { return p.dir }

// Image is the pool's image file, or "" when the data dir is on btrfs.
func (p *DiskPool) Image() string { return p.image }

// Device is the loop device the image is attached to, or "".
func (p *DiskPool) Device() string { return p.device }

// InPrivateMountNamespace reports whether this process is the re-executed
// child of EnterMountNamespace, whose mounts are its own.
func InPrivateMountNamespace() bool { return os.Getenv(mountNSEnv) == "1" }

// OpenDiskPool finds or makes, mounts and enables quotas on the pool of
// cfg.DataDir. Call it in the host's mount namespace (before
// EnterMountNamespace); a mount of the image that exists already is reused,
// never mounted a second time.
func OpenDiskPool(cfg DiskPoolConfig) (*DiskPool, error) {
	if !btrfsAvailable() {
		return nil, sandbox.FailedPrecondition(sandbox.ReasonRuntimeError,
			"this kernel has no btrfs (see /proc/filesystems), which per-sandbox disk limits need: load the btrfs module, or run with --disk-limits=off (sandboxes' writable layers are then unbounded)")
	}
	if !filepath.IsAbs(cfg.DataDir) {
		return nil, fmt.Errorf("data dir %q must be an absolute path", cfg.DataDir)
	}
	dataDir := filepath.Clean(cfg.DataDir)
	if err := os.MkdirAll(dataDir, 0o711); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dataDir, err)
	}
	p := &DiskPool{dir: filepath.Join(dataDir, "disk")}
	if err := os.Mkdir(p.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create %s: %w", p.dir, err)
	}
	source, fstype, err := mountOf(p.dir)
	if err != nil {
		return nil, err
	}
	onBtrfs, err := isBtrfs(dataDir)
	if err != nil {
		return nil, err
	}
	if source == "" && onBtrfs {
		// The data dir is btrfs: subvolumes go straight into it.
		return p, p.enableQuota()
	}
	p.image = filepath.Join(dataDir, "disk.img")
	p.guard = &diskGuard{hostDir: dataDir, reserve: cfg.Reserve}
	if cfg.Reserve == 0 {
		p.guard.reserve = DefaultDiskReserve
	}
	switch {
	case source != "" && fstype != "btrfs":
		return nil, fmt.Errorf("%s is a mount of %s (%s), not of the disk pool: unmount it", p.dir, source, fstype)
	case source != "":
		if loopOf(p.image) != source {
			return nil, fmt.Errorf("%s is a btrfs mount of %s, not of the disk pool image %s: unmount it", p.dir, source, p.image)
		}
		p.device = source
		return p, p.enableQuota()
	case cfg.NoMount:
		return nil, fmt.Errorf("the disk pool %s is not mounted in this process's mount namespace, which is private: the server mounts it before it enters that namespace", p.image)
	}
	if err := makePoolImage(p.image, dataDir, cfg.Size); err != nil {
		return nil, err
	}
	if err := p.mount(); err != nil {
		return nil, err
	}
	return p, p.enableQuota()
}

// makePoolImage makes the sparse btrfs image file unless it exists. It is
// formatted under a temporary name, so a crash never leaves a half-made
// image under the real one.
func makePoolImage(image, dataDir string, size int64) error {
	if _, err := os.Stat(image); err == nil {
		return nil
	}
	if size == 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(dataDir, &st); err != nil {
			return err
		}
		size = int64(st.Bavail) * st.Bsize / 2
		size = min(max(size, MinDiskPoolBytes), MaxDiskPoolBytes)
	}
	if size < MinDiskPoolBytes || size > MaxDiskPoolBytes {
		return fmt.Errorf("disk pool size %d bytes is out of range: use %d GiB to %d TiB", size, MinDiskPoolBytes>>30, MaxDiskPoolBytes>>40)
	}
	mkfs, err := exec.LookPath("mkfs.btrfs")
	if err != nil {
		return fmt.Errorf("mkfs.btrfs is needed to make the disk pool %s: apt-get install btrfs-progs (scripts/deps.sh does), or run with --disk-limits=off", image)
	}
	tmp := image + ".tmp"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	f.Close()
	if err == nil {
		if out, merr := exec.Command(mkfs, "-q", tmp).CombinedOutput(); merr != nil {
			err = fmt.Errorf("mkfs.btrfs %s: %w: %s", tmp, merr, out)
		}
	}
	if err == nil {
		err = os.Rename(tmp, image)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("make the disk pool image: %w", err)
	}
	return nil
}

// mount attaches the image to a loop device (or takes the one it is
// attached to already: then the filesystem is alive in another mount
// namespace, and mounting that same device again shares its superblock)
// and mounts it on p.dir.
func (p *DiskPool) mount() error {
	dev := loopOf(p.image)
	var hold *os.File
	var err error
	if dev == "" {
		if dev, hold, err = attachLoop(p.image); err != nil {
			return err
		}
	} else if hold, err = os.OpenFile(dev, os.O_RDWR, 0); err != nil {
		return err
	} else if loopOf(p.image) != dev {
		// Detached before we held it open: attach anew.
		hold.Close()
		if dev, hold, err = attachLoop(p.image); err != nil {
			return err
		}
	}
	// Held open until mounted: closing an autoclear device unused detaches it.
	defer hold.Close()
	if err := unix.Mount(dev, p.dir, "btrfs", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount the disk pool %s (%s) on %s: %w", p.image, dev, p.dir, err)
	}
	p.device = dev
	// mkfs made the root 0755; sandboxes' layers are root's alone.
	return os.Chmod(p.dir, 0o700)
}

// enableQuota turns on btrfs quotas once; they stay on in the filesystem.
func (p *DiskPool) enableQuota() error {
	fd, err := unix.Open(p.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	on, err := quotaEnabled(fd)
	if err != nil {
		return fmt.Errorf("disk pool %s: %w", p.dir, err)
	}
	if on {
		return nil
	}
	if err := quotaEnable(fd); err != nil {
		return fmt.Errorf("enable btrfs quotas on the disk pool %s: %w", p.dir, err)
	}
	return nil
}

// Unmount detaches an image-backed pool's mount from this mount namespace.
// Sandboxes still running keep the filesystem alive through their own
// mounts, and its loop device detaches itself with the last of them; a
// server started meanwhile finds that device (loopOf) and mounts it again,
// so the image is never mounted through a second device. sbx serve calls
// it when it exits, so that nothing stays mounted once its sandboxes are
// gone.
func (p *DiskPool) Unmount() error {
	if p.image == "" {
		return nil
	}
	return unmount(p.dir)
}

// create makes the subvolume of a sandbox, limited to limit bytes (0: only
// the pool bounds it), with its overlay upper and work dirs, and returns
// them.
func (p *DiskPool) create(name string, limit int64) (upper, work string, err error) {
	if err := p.room(); err != nil {
		return "", "", err
	}
	err = subvolCreate(p.dir, name)
	if errors.Is(err, unix.EEXIST) {
		// Left by a crash of a Create that recovery did not see through.
		if err = p.destroy(name); err == nil {
			err = subvolCreate(p.dir, name)
		}
	}
	if err != nil {
		return "", "", err
	}
	sub := filepath.Join(p.dir, name)
	if limit > 0 {
		fd, err := unix.Open(sub, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", "", errors.Join(err, p.destroy(name))
		}
		err = qgroupLimit(fd, limit)
		unix.Close(fd)
		if err != nil {
			return "", "", errors.Join(fmt.Errorf("limit btrfs subvolume %s to %d bytes: %w", sub, limit, err), p.destroy(name))
		}
	}
	upper, work = filepath.Join(sub, "upper"), filepath.Join(sub, "work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", "", errors.Join(err, p.destroy(name))
		}
	}
	return upper, work, nil
}

// destroy deletes the subvolume of a sandbox with its files and its
// qgroup; a missing one is fine.
func (p *DiskPool) destroy(name string) error {
	sub := filepath.Join(p.dir, name)
	fd, err := unix.Open(sub, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", sub, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	var id uint64
	if err == nil && st.Ino == btrfsFirstFreeObjID {
		id, err = subvolID(fd)
	}
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", sub, err)
	}
	if st.Ino != btrfsFirstFreeObjID {
		// A plain directory (a crash inside create): no subvolume.
		return os.RemoveAll(sub)
	}
	dropDirty(sub)
	if err := subvolDestroy(p.dir, name); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	pfd, err := unix.Open(p.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	// Busy while the cleaner frees the subvolume's extents: the kernel
	// removes the qgroup itself once it has.
	if err := qgroupDestroy(pfd, id); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("remove the qgroup 0/%d of %s: %w", id, sub, err)
	}
	return nil
}

// qgroups lists the pool's level-0 qgroups but the top level's ("0_256").
func (p *DiskPool) qgroups() ([]string, error) {
	fd, err := unix.Open(p.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	dir, err := btrfsSysfs(fd)
	if err != nil {
		return nil, err
	}
	m, err := filepath.Glob(filepath.Join(dir, "qgroups", "0_*"))
	var out []string
	for _, q := range m {
		if b := filepath.Base(q); b != "0_5" {
			out = append(out, b)
		}
	}
	return out, err
}

// writableLayer makes a sandbox's overlay upper and work dirs: in a
// subvolume of the disk pool named like its dir, limited to limit bytes,
// or in its data dir when the runtime has no pool.
func (r *Runtime) writableLayer(dir string, limit int64) (upper, work string, err error) {
	if r.cfg.Disk != nil {
		return r.cfg.Disk.create(filepath.Base(dir), limit)
	}
	data := r.dataOf(dir)
	upper, work = filepath.Join(data, "upper"), filepath.Join(data, "work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", "", err
		}
	}
	return upper, work, nil
}

// diskAgent names the sandbox's disk limit in the errors of writes that hit
// it: the agent only sees EDQUOT ("disk is full").
type diskAgent struct {
	sandbox.Agent
	limit int64
	pool  *DiskPool
}

func withDiskLimit(a sandbox.Agent, limit int64, pool *DiskPool) sandbox.Agent {
	if limit <= 0 {
		return a
	}
	return diskAgent{a, limit, pool}
}

func (a diskAgent) explain(op, path string, err error) error {
	if !errors.Is(err, sandbox.ErrResourceExhausted) || sandbox.ReasonOf(err) != sandbox.ReasonFileTooLarge {
		return err
	}
	if !strings.Contains(err.Error(), unix.EDQUOT.Error()) {
		if !strings.Contains(err.Error(), unix.ENOSPC.Error()) || !onWritableLayer(path) {
			// Another filesystem of the sandbox is full (/dev/shm is a
			// 64 MiB tmpfs): not the disk limit's business.
			return err
		}
		// The pool (or the data dir) is full, not this sandbox's share.
		return retryLater(sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonDiskPoolFull,
			"%s %s: the server's disk for sandboxes is full, below this sandbox's limit of %s: retry later or ask the operator for a larger disk pool (--disk-pool-bytes): %w", op, path, formatBytes(a.limit), err))
	}
	if a.pool != nil && a.pool.Frozen() {
		return retryLater(sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonDiskPoolFull,
			"%s %s: the server's data dir is nearly full, so every sandbox's disk is frozen at its size until the operator frees space: remove files in the sandbox to write more: %w", op, path, err))
	}
	return sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonDiskLimit,
		"%s %s: the sandbox's disk limit of %s (resources.disk_bytes) is reached: remove files in it, or create the sandbox with a larger disk_bytes: %w", op, path, formatBytes(a.limit), err)
}

// onWritableLayer reports whether path (absolute, in the sandbox) is on
// the sandbox's root filesystem, whose writable layer the disk limit
// bounds, rather than on one of the filesystems the spec mounts over it
// (spec.go; sandbox code cannot mount more).
func onWritableLayer(path string) bool {
	for _, m := range []string{"/dev", "/proc", "/sys", "/.sbx"} {
		if path == m || strings.HasPrefix(path, m+"/") {
			return false
		}
	}
	return true
}

// WriteFile writes through the agent, naming the disk limit when it is hit.
func (a diskAgent) WriteFile(ctx context.Context, path string, mode os.FileMode, r io.Reader) error {
	return a.explain("write", path, a.Agent.WriteFile(ctx, path, mode, r))
}

// MkdirAll makes dirs through the agent, naming the disk limit when it is hit.
func (a diskAgent) MkdirAll(ctx context.Context, path string, mode os.FileMode) error {
	return a.explain("mkdir", path, a.Agent.MkdirAll(ctx, path, mode))
}

func formatBytes(n int64) string {
	switch {
	case n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// recoverDisk deletes the pool's subvolumes whose sandbox dir is gone: a
// crash between a teardown's release and the dir's removal cannot leave
// one (release destroys it first), but a dir removed by hand can.
func (r *Runtime) recoverDisk() error {
	if r.cfg.Disk == nil {
		return nil
	}
	names, err := r.unclaimed(r.cfg.Disk.dir)
	for _, name := range names {
		err = errors.Join(err, r.cfg.Disk.destroy(name))
	}
	return err
}
