package agent

import (
	"os"
	"path/filepath"
	"syscall"
)

// writeAtomic replaces path with what fill writes: into a temporary file in
// the same directory, then renamed over path. If fill or any step fails,
// path is untouched and the temporary file is removed.
//
// Only a durable write is synced to disk (the file, then the directory).
// For files in the sandbox the rename alone gives every process the old
// file or the whole new one, never a part; fsync would only matter after a
// crash of the host, which no sandbox survives (its root filesystem is
// thrown away with it), and it cost as much as the transfer itself (about
// 0.6 s per GiB written here). The agent's own state is durable.
func writeAtomic(path string, mode os.FileMode, durable bool, fill func(*os.File) error) (err error) {
	dir, base := filepath.Split(path)
	tmp, err := os.CreateTemp(dir, "."+truncName(base)+".sbx-tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if fi, serr := os.Stat(path); serr == nil {
		// Replacing a file keeps its owner, so that the sandbox's user can
		// still write what it owned.
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			_ = tmp.Chown(int(st.Uid), int(st.Gid))
		}
	}
	if err = fill(tmp); err != nil {
		return err
	}
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if durable {
		if err = tmp.Sync(); err != nil {
			return err
		}
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil || !durable {
		return err
	}
	// Make the rename itself durable.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// truncName keeps a temporary name within NAME_MAX (255) for long names.
func truncName(s string) string {
	if len(s) > 200 {
		return s[:200]
	}
	return s
}
