package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// dataDirLock is the file whose flock makes a server the only one on its
// data dir.
const dataDirLock = "serve.lock"

// lockDataDir takes <dir>/serve.lock (flock, never waiting) for as long as
// the returned file stays open: one sbx serve per data dir. Two would share
// the store and the sandboxes' files, and one that failed later at start
// (a port in use) would, on its way out, unmount the run root of the one
// running (local.ReleaseRunRoot unmounts it when no sandbox is left in
// it), which would lose the records of every sandbox made after that.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, dataDirLock)
	f, err := lockFile(path)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return nil, fmt.Errorf("data dir %s is in use by another sbx serve%s: stop it, or give this one a --data-dir of its own", dir, holder(path))
	}
	if err != nil {
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	return f, nil
}
