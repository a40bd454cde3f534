package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// mountOverlay mounts the image layers (bottom first) with upper and work as
// the sandbox's writable layer on target. A volatile overlay never syncs
// its upper filesystem (not at syncfs, not at unmount): on a btrfs upper
// with quotas each sync is a transaction commit with qgroup accounting,
// and a sandbox's writable layer does not outlive a host crash anyway.
func mountOverlay(layers []string, upper, work, target string, volatile bool) error {
	lower := make([]string, len(layers))
	for i, l := range layers {
		if strings.ContainsAny(l, ":,\\") {
			return fmt.Errorf("layer dir %q contains a character overlayfs options cannot hold", l)
		}
		lower[len(layers)-1-i] = l // overlayfs lists the top layer first
	}
	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + upper + ",workdir=" + work
	if volatile {
		opts += ",volatile"
	}
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("overlay options for %d layers are %d bytes, over the kernel's limit of one page: use an image with fewer layers or a shorter image store root", len(layers), len(opts))
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	return nil
}

// lowerdirPlus says whether mountOverlayIDMapped's attached path first
// tries to pass the layers one by one ("lowerdir+", Linux 6.8; 6.5 to 6.7
// refuse the key at fsconfig, older kernels at the create); tests turn it
// off to run the path older kernels take.
var lowerdirPlus = true

// layerFDs says whether mountOverlayIDMapped first tries to hand overlayfs
// the detached idmapped mounts themselves (mountOverlayFDs). It turns
// false, for the rest of the process, the first time the kernel refuses;
// tests turn it off to run the attached path.
var layerFDs atomic.Bool

func init() { layerFDs.Store(true) }

// mountOverlayIDMapped is mountOverlay with every layer seen through an
// idmapped mount of userns (userns.go), so that the sandbox sees the
// layers' files with the owners they have on disk while the host sees
// them in the sandbox's range.
//
// Since Linux 6.15 overlayfs takes each layer as a descriptor
// (FSCONFIG_SET_FD "lowerdir+", 6.13) even when it is a detached mount, so
// the idmapped mounts never enter any mount table (mountOverlayFDs). Older
// kernels refuse a detached mount as a layer ("failed to clone
// lowerpath"), so there each idmapped mount is attached under scratch
// (scratch/0, scratch/1, ...) only while the overlay is made, and
// unmounted right after (overlayfs keeps private clones of its layers):
// four more mount-table changes per layer, about 1.5 ms of a cold create
// of a one-layer image on the benchmark machine. That path passes the
// layers one by one ("lowerdir+", Linux 6.8), so no option string bounds
// their number; a kernel without it (overlayfs takes idmapped layers
// since 5.19, e.g. Debian 12's 6.1) gets them as one lowerdir= option of
// the short scratch paths.
func mountOverlayIDMapped(layers []string, upper, work, target, scratch string, volatile bool, userns *os.File) (err error) {
	if layerFDs.Load() {
		err := mountOverlayFDs(layers, upper, work, target, volatile, userns)
		if !errors.Is(err, errNoLayerFDs) {
			return err
		}
		layerFDs.Store(false)
	}
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return err
	}
	var attached []string
	defer func() {
		for _, m := range attached {
			if uerr := unmount(m); uerr != nil && err == nil {
				err = uerr
			}
		}
		if rerr := removeScratch(scratch); rerr != nil && err == nil {
			err = rerr
		}
	}()
	mounts := make([]string, len(layers)) // bottom first, as layers
	for i, l := range layers {
		fd, err := idmapped(l, userns)
		if err != nil {
			return err
		}
		m := filepath.Join(scratch, strconv.Itoa(i))
		err = os.Mkdir(m, 0o700)
		if err == nil {
			err = unix.MoveMount(fd, "", unix.AT_FDCWD, m, unix.MOVE_MOUNT_F_EMPTY_PATH)
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("attach the idmapped mount of %s: %w", l, err)
		}
		attached = append(attached, m)
		mounts[i] = m
	}
	if lowerdirPlus {
		err := mountOverlayFS(mounts, upper, work, target, volatile)
		if !errors.Is(err, errNoLowerdirPlus) {
			return err
		}
		if cerr := mountOverlay(mounts, upper, work, target, volatile); cerr != nil {
			return errors.Join(err, cerr)
		}
		return nil
	}
	return mountOverlay(mounts, upper, work, target, volatile)
}

// errNoLayerFDs says the kernel's overlayfs does not take detached mounts
// as layers by descriptor (Linux 6.15).
var errNoLayerFDs = errors.New("overlayfs takes no detached layers by descriptor (Linux 6.15)")

// mountOverlayFDs mounts the overlay of layers (bottom first), each an
// idmapped detached mount of userns passed by descriptor. A refusal that
// an older kernel gives is errNoLayerFDs.
func mountOverlayFDs(layers []string, upper, work, target string, volatile bool, userns *os.File) error {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("%w: fsopen overlay: %w", errNoLayerFDs, err)
	}
	defer unix.Close(fsfd)
	// The layers' descriptors stay open until the overlay is made: the last
	// close of a detached mount's descriptor unmounts it, and overlayfs
	// clones its layers only at the create. They are closed in the
	// background: that unmount waits for an expedited RCU grace period
	// (about a millisecond on a busy host), which the create need not wait
	// for.
	var fds []int
	defer func() { go closeAll(fds) }()
	for i := len(layers) - 1; i >= 0; i-- { // overlayfs takes the top layer first
		fd, err := idmapped(layers[i], userns)
		if err != nil {
			return err
		}
		fds = append(fds, fd)
		if err := unix.FsconfigSetFd(fsfd, "lowerdir+", fd); err != nil {
			if i == len(layers)-1 && errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("%w: %w", errNoLayerFDs, err)
			}
			return fmt.Errorf("overlay lower layer %s: %w", layers[i], err)
		}
	}
	// 6.13 and 6.14 take the descriptors but cannot clone a detached
	// mount at the create; older kernels may only refuse there too.
	return makeOverlay(fsfd, upper, work, target, volatile, len(layers), errNoLayerFDs, unix.EINVAL, unix.EPERM)
}

// errNoLowerdirPlus says the kernel's overlayfs does not know "lowerdir+".
var errNoLowerdirPlus = errors.New("overlayfs has no lowerdir+ (Linux 6.8)")

// mountOverlayFS mounts the overlay of the attached layer mounts (bottom
// first) through the new mount API, one "lowerdir+" each.
func mountOverlayFS(mounts []string, upper, work, target string, volatile bool) error {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	for i := len(mounts) - 1; i >= 0; i-- { // overlayfs takes the top layer first
		if err := unix.FsconfigSetString(fsfd, "lowerdir+", mounts[i]); err != nil {
			if i == len(mounts)-1 && errors.Is(err, unix.EINVAL) {
				return errNoLowerdirPlus
			}
			return fmt.Errorf("overlay lower layer %s: %w", mounts[i], err)
		}
	}
	// Before 6.5 overlayfs takes fsconfig keys unchecked (the legacy mount
	// API) and refuses the unknown lowerdir+ only at the create.
	return makeOverlay(fsfd, upper, work, target, volatile, len(mounts), errNoLowerdirPlus, unix.EINVAL)
}

// makeOverlay finishes the overlay context fsfd, whose n layers are set:
// its upper and work dirs, the create, and the mount on target. A create
// refused with one of the errnos in olderKernel is refusal, the caller's
// cue to try the older way.
func makeOverlay(fsfd int, upper, work, target string, volatile bool, n int, refusal error, olderKernel ...unix.Errno) error {
	if err := unix.FsconfigSetString(fsfd, "upperdir", upper); err != nil {
		return fmt.Errorf("overlay upperdir %s: %w", upper, err)
	}
	if err := unix.FsconfigSetString(fsfd, "workdir", work); err != nil {
		return fmt.Errorf("overlay workdir %s: %w", work, err)
	}
	if volatile {
		if err := unix.FsconfigSetFlag(fsfd, "volatile"); err != nil {
			return fmt.Errorf("overlay volatile: %w", err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		for _, e := range olderKernel {
			if errors.Is(err, e) {
				return fmt.Errorf("%w: create: %w", refusal, err)
			}
		}
		return fmt.Errorf("create the overlay of %d idmapped layers: %w", n, err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	return nil
}

// scratchDir is where a sandbox's idmapped layers are attached while its
// overlay is made (mountOverlayIDMapped).
func scratchDir(dir string) string { return filepath.Join(dir, "lower") }

// releaseScratch unmounts and removes what a killed Create left attached
// in dir's scratch dir; a missing one is fine.
func releaseScratch(dir string) error {
	scratch := scratchDir(dir)
	entries, err := os.ReadDir(scratch)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, unmount(filepath.Join(scratch, e.Name())))
	}
	errs = append(errs, removeScratch(scratch))
	return errors.Join(errs...)
}

// removeScratch removes the scratch dir with rmdir only, never
// recursively: a layer still mounted there (EBUSY) stays, with its files.
func removeScratch(scratch string) error {
	entries, _ := os.ReadDir(scratch)
	var errs []error
	for _, e := range entries {
		if err := os.Remove(filepath.Join(scratch, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(scratch); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// unmount detaches target; not being mounted (or not existing) is fine.
func unmount(target string) error {
	err := unix.Unmount(target, unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", target, err)
}

// isMountPoint reports whether path is a mount point (its device differs
// from its parent's), so that nothing is ever removed through a live mount.
func isMountPoint(path string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(path, &st) != nil || unix.Lstat(filepath.Dir(path), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// closeAll closes the descriptors fds.
func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
