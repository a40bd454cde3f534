package local

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The run root. Every sandbox has a dir of small files that live as long as
// it does: its record, its OCI spec, its pid file, the /etc files it gets,
// the mount point of its root filesystem, and the OCI runtime's own state
// of its container. A create writes about fifteen of them and a teardown
// removes them all. On a disk filesystem that is the dearest part of a
// create: ext4 without a journal (this benchmark machine's root) looks,
// for every new inode, at each inode freed in the last minutes before it
// takes one, so at 75 creates a second its inode allocation alone took 11 %
// of the host's CPU, and more every second the rate held. Those files are
// state of running processes, which dies with them at a reboot, so they
// go where containerd and runc keep theirs: on a tmpfs (/run/containerd,
// /run/runc), here one of sbx's own, RunRootOf(data dir), mounted in the
// host's mount namespace so that it outlives the server as its sandboxes do.
//
// What must stay on disk stays there, in the sandbox's data dir
// <Root>/data/<name>: its state dir (the agent's socket, the main
// command's log of up to 16 MiB, its exit status), bound into the sandbox
// at /.sbx/state, and, without a disk pool, its writable layer. Written to
// a tmpfs, the log would count against the sandbox's memory, the layer
// against the host's.
//
// After a reboot the run root is empty, as no sandbox survives one: New
// removes the data dirs and disk subvolumes that no sandbox dir claims,
// and sbx serve releases the image uses of sandboxes it does not have
// (ReleaseImageUses).
//
// A Runtime whose Root still holds sandbox dirs of an older server (which
// kept everything under Root) keeps that layout until they are gone: their
// containers' state is in the OCI runtime's old root, and a live mount
// cannot move.

// The run root's dirs that sbx serve gives other packages: the network's
// state files (network.Config.StateDir) and the image uses
// (image.Config.UsesDir). ReleaseRunRoot keeps a run root where they hold
// anything.
const (
	RunRootNetwork   = "network"
	RunRootImageUses = "image-uses"
)

// runRootBase is where the run roots of a host's servers are, one per data
// dir. Not in /run/sbx, which holds host-wide locks and claims and which
// docs/API.md suggests closing to a group for the API's socket: a
// sandbox's root must search its way into its run root.
const runRootBase = "/run/sbx-sandboxes"

// RunRootOf is the run root of the server with data dir dataDir:
// /run/sbx-sandboxes/ and 12 hex digits of the hash of its clean path.
func RunRootOf(dataDir string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(dataDir)))
	return filepath.Join(runRootBase, hex.EncodeToString(sum[:6]))
}

// OpenRunRoot mounts a tmpfs on RunRootOf(dataDir) unless one is there
// already (a server that ran before left it for its sandboxes), and
// returns the path. Call it in the host's mount namespace, as OpenDiskPool;
// with noMount (in the private one) it only checks that the tmpfs is there.
func OpenRunRoot(dataDir string, noMount bool) (string, error) {
	dir := RunRootOf(dataDir)
	_, fstype, err := mountOf(dir)
	if err != nil {
		return "", err
	}
	switch {
	case fstype == "tmpfs":
		return dir, nil
	case fstype != "":
		return "", fmt.Errorf("%s is a mount of a %s filesystem, not sbx's tmpfs: unmount it", dir, fstype)
	case noMount:
		return "", fmt.Errorf("the run root %s is not mounted in this process's mount namespace, which is private: the server mounts it before it enters that namespace", dir)
	}
	// 0711 on the way: a sandbox's root, an unprivileged host uid under
	// user namespaces, searches its way to the files bound into it.
	if err := os.MkdirAll(runRootBase, 0o711); err != nil {
		return "", fmt.Errorf("create %s: %w", runRootBase, err)
	}
	if err := os.Mkdir(dir, 0o711); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	// A tenth of the memory bounds what a runaway writer could take; a
	// sandbox's files there are some tens of KiB.
	if err := unix.Mount("sbx-run", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0711,size=10%"); err != nil {
		return "", fmt.Errorf("mount a tmpfs on the run root %s: %w", dir, err)
	}
	return dir, nil
}

// ReleaseRunRoot unmounts the run root dir and removes its mount point if
// it holds no sandbox (the server's last ones were deleted), so that a
// server that stops leaves nothing mounted; with sandboxes it stays, for
// the next start. Call it in the host's mount namespace.
func ReleaseRunRoot(dir string) error {
	if dir == "" {
		return nil
	}
	if _, fstype, err := mountOf(dir); err != nil || fstype != "tmpfs" {
		return err
	}
	// The network's state and the image uses are sandboxes' too: those
	// of sandboxes an older server keeps under its data dir (OldLayout)
	// are only here.
	for _, sub := range []string{"sb", RunRootNetwork, RunRootImageUses} {
		if entries, _ := os.ReadDir(filepath.Join(dir, sub)); len(entries) > 0 {
			return nil
		}
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount the run root %s: %w", dir, err)
	}
	return os.Remove(dir)
}

// layout decides where this Runtime's sandbox dirs and OCI state go: under
// Config.RunRoot with data dirs under Root, or all under Root when there
// is no run root or Root holds sandbox dirs of an older server (see the
// top of this file).
func (r *Runtime) layout() {
	r.runRoot = r.cfg.Root
	if r.cfg.RunRoot == "" || r.cfg.RunRoot == r.cfg.Root {
		return
	}
	if old, _ := os.ReadDir(filepath.Join(r.cfg.Root, "sb")); len(old) > 0 {
		r.oldLayout = len(old)
		return
	}
	r.runRoot = r.cfg.RunRoot
	r.dataHome = filepath.Join(r.cfg.Root, "data")
}

// OldLayout is how many sandbox dirs of an older server made this Runtime
// keep all its files under Root (0: it uses the run root, or has none).
func (r *Runtime) OldLayout() int { return r.oldLayout }

// RunRoot is where this Runtime keeps its sandbox dirs and OCI state.
func (r *Runtime) RunRoot() string { return r.runRoot }

// sbRoot holds the sandbox dirs.
func (r *Runtime) sbRoot() string { return filepath.Join(r.runRoot, "sb") }

// dataOf is the data dir of the sandbox with dir dir: <Root>/data/<name>,
// or dir itself in the old layout.
func (r *Runtime) dataOf(dir string) string {
	if r.dataHome == "" {
		return dir
	}
	return filepath.Join(r.dataHome, filepath.Base(dir))
}

// stateOf is the agent's state dir of the sandbox with dir dir.
func (r *Runtime) stateOf(dir string) string { return stateDir(r.dataOf(dir)) }

// makeDataDir makes the data dir of the sandbox with dir dir, searchable
// by its root only (as dir, see sandboxDirAccess), when it is not dir. One
// left by a crash under the same name is replaced: its sandbox dir is
// gone, or Create could not have made it.
func (r *Runtime) makeDataDir(dir string, base uint32) error {
	data := r.dataOf(dir)
	if data == dir {
		return nil
	}
	if err := os.RemoveAll(data); err != nil {
		return err
	}
	if err := os.Mkdir(data, 0o700); err != nil {
		return err
	}
	if base != 0 {
		return sandboxDirAccess(data, base)
	}
	return nil
}

// removeDataDir removes the data dir of the sandbox with dir dir when it is
// not dir (the caller removes dir).
func (r *Runtime) removeDataDir(dir string) error {
	if data := r.dataOf(dir); data != dir {
		return os.RemoveAll(data)
	}
	return nil
}

// recoverDataDirs removes the data dirs whose sandbox dir is gone: after a
// reboot emptied the run root, all of them.
func (r *Runtime) recoverDataDirs() error {
	if r.dataHome == "" {
		return nil
	}
	names, err := r.unclaimed(r.dataHome)
	for _, name := range names {
		err = errors.Join(err, os.RemoveAll(filepath.Join(r.dataHome, name)))
	}
	return err
}

// unclaimed lists the entries of dir (data dirs, pool subvolumes, named
// like sandbox dirs) that no sandbox dir claims.
func (r *Runtime) unclaimed(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if _, err := os.Lstat(filepath.Join(r.sbRoot(), e.Name())); errors.Is(err, os.ErrNotExist) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// ReleaseImageUses releases the image store's uses by sandboxes this
// Runtime does not have, and returns how many. Uses are files on disk and
// the sandboxes' records are on the run root: after a reboot emptied it,
// the uses of the sandboxes that died with the host would pin their images
// for good. Call it only when this Runtime is the store's one user, as in
// sbx serve (tests share a store between runtimes).
func (r *Runtime) ReleaseImageUses() (int, error) {
	return r.cfg.Images.ReleaseExcept(func(id string) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.boxes[id] != nil
	})
}
