package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
