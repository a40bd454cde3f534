package local

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// The btrfs ioctls the disk pool uses (linux/btrfs.h). They are called
// directly, not through btrfs-progs, so that a sandbox's create and delete
// cost a few syscalls instead of a process each.
const (
	btrfsIocSync         = 0x9408     // _IO(0x94, 8)
	btrfsIocSubvolCreate = 0x5000940E // _IOW(0x94, 14, btrfs_ioctl_vol_args)
	btrfsIocSnapDestroy  = 0x5000940F // _IOW(0x94, 15, btrfs_ioctl_vol_args)
	btrfsIocInoLookup    = 0xD0009412 // _IOWR(0x94, 18, btrfs_ioctl_ino_lookup_args)
	btrfsIocFSInfo       = 0x8400941F // _IOR(0x94, 31, btrfs_ioctl_fs_info_args)
	btrfsIocQuotaCtl     = 0xC0109428 // _IOWR(0x94, 40, btrfs_ioctl_quota_ctl_args)
	btrfsIocQgroupCreate = 0x4010942A // _IOW(0x94, 42, btrfs_ioctl_qgroup_create_args)
	btrfsIocQgroupLimit  = 0x8030942B // _IOR(0x94, 43, btrfs_ioctl_qgroup_limit_args)

	btrfsQuotaCtlEnable   = 1
	btrfsLimitMaxRfer     = 1 << 0
	btrfsFirstFreeObjID   = 256
	btrfsSuperMagic       = 0x9123683E
	btrfsVolNameMax       = 4087
	btrfsQgroupLevelShift = 48
)

// btrfsVolArgs is struct btrfs_ioctl_vol_args.
type btrfsVolArgs struct {
	fd   int64
	name [btrfsVolNameMax + 1]byte
}

// btrfsInoLookupArgs is struct btrfs_ioctl_ino_lookup_args.
type btrfsInoLookupArgs struct {
	treeID   uint64
	objectID uint64
	name     [4080]byte
}

// btrfsFSInfoArgs is struct btrfs_ioctl_fs_info_args (1024 bytes).
type btrfsFSInfoArgs struct {
	maxID      uint64
	numDevices uint64
	fsid       [16]byte
	rest       [1024 - 32]byte
}

// btrfsQgroupLimitArgs is struct btrfs_ioctl_qgroup_limit_args.
type btrfsQgroupLimitArgs struct {
	qgroupID uint64
	flags    uint64
	maxRfer  uint64
	maxExcl  uint64
	rsvRfer  uint64
	rsvExcl  uint64
}

// btrfsPairArgs is struct btrfs_ioctl_quota_ctl_args and
// btrfs_ioctl_qgroup_create_args: two u64s.
type btrfsPairArgs struct{ a, b uint64 }

func btrfsIoctl(fd int, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

func volArgs(name string) (*btrfsVolArgs, error) {
	if name == "" || len(name) > btrfsVolNameMax || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return nil, fmt.Errorf("subvolume name %q is invalid", name)
	}
	a := &btrfsVolArgs{}
	copy(a.name[:], name)
	return a, nil
}

// subvolCreate makes the subvolume parent/name.
func subvolCreate(parent, name string) error {
	return subvolIoctl(parent, name, btrfsIocSubvolCreate, "create")
}

// subvolDestroy deletes the subvolume parent/name with everything in it;
// the space comes back once btrfs's cleaner has run.
func subvolDestroy(parent, name string) error {
	return subvolIoctl(parent, name, btrfsIocSnapDestroy, "delete")
}

// subvolIoctl applies a btrfs ioctl that names a subvolume (create,
// destroy) to parent/name.
func subvolIoctl(parent, name string, req uintptr, what string) error {
	a, err := volArgs(name)
	if err != nil {
		return err
	}
	fd, err := unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := btrfsIoctl(fd, req, unsafe.Pointer(a)); err != nil {
		return fmt.Errorf("%s btrfs subvolume %s/%s: %w", what, parent, name, err)
	}
	return nil
}

// subvolID returns the id (tree id) of the subvolume dir is the root of.
func subvolID(fd int) (uint64, error) {
	a := &btrfsInoLookupArgs{objectID: btrfsFirstFreeObjID}
	if err := btrfsIoctl(fd, btrfsIocInoLookup, unsafe.Pointer(a)); err != nil {
		return 0, err
	}
	return a.treeID, nil
}

// qgroupLimit limits the referenced bytes of the subvolume fd is in.
func qgroupLimit(fd int, bytes int64) error {
	a := &btrfsQgroupLimitArgs{flags: btrfsLimitMaxRfer, maxRfer: uint64(bytes)}
	return btrfsIoctl(fd, btrfsIocQgroupLimit, unsafe.Pointer(a))
}

// qgroupDestroy removes the level-0 qgroup of subvolume id. It fails
// (ENOENT, EBUSY) while the deleted subvolume's extents are still being
// freed; kernels since 6.10 then remove it themselves once they are.
func qgroupDestroy(fd int, id uint64) error {
	a := &btrfsPairArgs{a: 0, b: id} // create=0: destroy qgroupid 0/id
	return btrfsIoctl(fd, btrfsIocQgroupCreate, unsafe.Pointer(a))
}

// btrfsSysfs returns the sysfs dir of the btrfs that fd is in.
func btrfsSysfs(fd int) (string, error) {
	a := &btrfsFSInfoArgs{}
	if err := btrfsIoctl(fd, btrfsIocFSInfo, unsafe.Pointer(a)); err != nil {
		return "", fmt.Errorf("btrfs fs info: %w", err)
	}
	u := a.fsid
	return filepath.Join("/sys/fs/btrfs", fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])), nil
}

// quotaEnabled reports whether quota accounting is on for the btrfs that
// fd is in (sysfs shows a qgroups dir then).
func quotaEnabled(fd int) (bool, error) {
	dir, err := btrfsSysfs(fd)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(filepath.Join(dir, "qgroups"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// btrfsSync commits the filesystem fd is in and wakes its cleaner, which
// frees deleted subvolumes (and then drops their qgroups).
func btrfsSync(fd int) error { return btrfsIoctl(fd, btrfsIocSync, nil) }

// quotaEnable turns on quota accounting (full qgroups) for the btrfs fd
// is in.
func quotaEnable(fd int) error {
	a := &btrfsPairArgs{a: btrfsQuotaCtlEnable}
	return btrfsIoctl(fd, btrfsIocQuotaCtl, unsafe.Pointer(a))
}

// isBtrfs reports whether path is on a btrfs filesystem.
func isBtrfs(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, err
	}
	return uint32(st.Type) == btrfsSuperMagic, nil
}

// btrfsAvailable reports whether the kernel knows btrfs, loading its module
// if it is one.
func btrfsAvailable() bool {
	if btrfsListed() {
		return true
	}
	// Debian's own kernels build btrfs as a module, loaded on first use:
	// load it as mount(2) would (modprobe is in kmod, on every Debian).
	_ = exec.Command("modprobe", "btrfs").Run()
	return btrfsListed()
}

// btrfsListed reports whether /proc/filesystems lists btrfs.
func btrfsListed() bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(strings.TrimPrefix(l, "nodev")) == "btrfs" {
			return true
		}
	}
	return false
}

// attachLoop attaches file to a free loop device with autoclear, so the
// device goes away with the last mount of it, and returns the device and
// an open file of it: the caller holds it until the device is mounted,
// since the last close of an unused autoclear device detaches it.
func attachLoop(file string) (string, *os.File, error) {
	img, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		return "", nil, err
	}
	defer img.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", nil, fmt.Errorf("open /dev/loop-control (is the loop module loaded?): %w", err)
	}
	defer ctl.Close()
	// Another process may take the free device between the two calls.
	for range 8 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", nil, fmt.Errorf("find a free loop device: %w", err)
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		if _, err := os.Stat(dev); errors.Is(err, os.ErrNotExist) {
			// Containers' /dev often has only the first few nodes.
			if err := unix.Mknod(dev, unix.S_IFBLK|0o600, int(unix.Mkdev(7, uint32(n)))); err != nil && !errors.Is(err, os.ErrExist) {
				return "", nil, fmt.Errorf("create %s: %w", dev, err)
			}
		}
		lo, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return "", nil, err
		}
		// Direct I/O: the image's pages are not cached a second time in
		// the host filesystem's page cache (the kernel falls back to
		// buffered I/O where the backing filesystem cannot).
		cfg := unix.LoopConfig{Fd: uint32(img.Fd()), Size: 4096}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_DIRECT_IO
		copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], file)
		err = unix.IoctlLoopConfigure(int(lo.Fd()), &cfg)
		if err != nil {
			lo.Close()
		}
		if errors.Is(err, unix.EBUSY) {
			continue
		}
		if err != nil {
			return "", nil, fmt.Errorf("attach %s to %s: %w", file, dev, err)
		}
		return dev, lo, nil
	}
	return "", nil, errors.New("attach " + file + ": every free loop device was taken by another process first")
}

// loopOf returns the loop device file is attached to, or "".
func loopOf(file string) string {
	devs, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, p := range devs {
		b, err := os.ReadFile(p)
		if err == nil && strings.TrimSpace(string(b)) == file {
			return "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(p)))
		}
	}
	return ""
}

// mountOf returns the source and filesystem type of the mount at target in
// this mount namespace, or "" when nothing is mounted there.
func mountOf(target string) (source, fstype string, err error) {
	infos, err := mountinfo.GetMounts(func(in *mountinfo.Info) (skip, stop bool) {
		return in.Mountpoint != target, false
	})
	if err != nil || len(infos) == 0 {
		return "", "", err
	}
	// The last mount on target is the visible one.
	in := infos[len(infos)-1]
	return in.Source, in.FSType, nil
}
