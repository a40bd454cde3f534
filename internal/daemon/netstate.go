package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The network's state files (one per attached sandbox: its address, bridge
// and policy) live in the run root, a tmpfs, since 2026-11-27: they
// describe links and rules that a reboot takes with it, and on the disk
// every sandbox cost a file created and removed (ext4 without a journal
// looks, for each new inode, at every inode freed in the last minutes).
// A server from before kept them in <data dir>/network; the next start
// moves them.

// oldNetworkState is where servers before the run root kept the network's
// state.
func oldNetworkState(dataDir string) string { return filepath.Join(dataDir, "network") }

// moveNetworkState moves the state files in old, if any, into dir and
// removes old. A file that dir has too (a move cut short by a crash) is
// left as dir has it. Leftover temporary files are dropped.
func moveNetworkState(old, dir string) error {
	if filepath.Clean(old) == filepath.Clean(dir) {
		return nil
	}
	entries, err := os.ReadDir(old)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		src := filepath.Join(old, name)
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			if err := os.Remove(src); err != nil {
				return err
			}
			continue
		}
		dst := filepath.Join(dir, name)
		if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
			if err := copyFileAtomic(src, dst); err != nil {
				return fmt.Errorf("move %s: %w", src, err)
			}
		} else if err != nil {
			return err
		}
		if err := os.Remove(src); err != nil {
			return err
		}
	}
	return os.Remove(old)
}

// copyFileAtomic copies src to dst through a temporary file in dst's dir
// (named as the network's own, which it removes if a crash leaves one), so
// dst is whole or absent.
func copyFileAtomic(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(dst), ".tmp-move-"+filepath.Base(dst))
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
