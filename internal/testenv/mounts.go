package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/moby/sys/mountinfo"
)

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(filepath.Clean(dir)))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(infos))
	for _, in := range infos {
		out = append(out, in.Mountpoint)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// unmountUnder detaches every mount at or below dir.
func unmountUnder(dir string) error {
	mps, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	for _, mp := range mps {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	return nil
}

// removeAllUnmounted removes dir after detaching any mount below it, and
// refuses if a mount remains: debootstrap bind-mounts the host's /dev nodes
// into its target, and RemoveAll through such a mount would delete the host's.
func removeAllUnmounted(dir string) error {
	if err := unmountUnder(dir); err != nil {
		return err
	}
	if mps, err := mountsUnder(dir); err != nil || len(mps) > 0 {
		return fmt.Errorf("not removing %s: still mounted below it: %v (%v); unmount them and retry", dir, mps, err)
	}
	return os.RemoveAll(dir)
}
