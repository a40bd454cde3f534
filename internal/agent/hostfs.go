package agent

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// The host reads the state dir while sandbox root can write it: any name in
// it may be a symlink, a FIFO, a device node or a huge file, and may change
// between two system calls. Every host-side access therefore goes through a
// descriptor of the state dir and openat2 with resolution confined beneath
// it and no symlinks at all, and checks what it got with fstat on the
// descriptor it then uses.

// resolveBeneath confines a lookup to the directory it starts from, refuses
// every symlink (even one inside the directory) and every /proc magic link.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// errNotRegular says a state file was replaced by something else.
var errNotRegular = errors.New("not a regular file")

// openStateDir opens dir itself for lookups beneath it (O_PATH: no read
// access is needed, and nothing about the dir is trusted but its identity).
func openStateDir(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

// openPathBeneath returns an O_PATH descriptor of name in the directory
// dirfd, without following any symlink. An O_PATH open has no side effect
// on what it names (a FIFO does not block, a device is not opened).
func openPathBeneath(dirfd int, name string) (int, error) {
	fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: resolveBeneath,
	})
	if err == unix.EINTR || err == unix.EAGAIN {
		// openat2 returns EAGAIN when a concurrent rename raced the lookup.
		fd, err = unix.Openat2(dirfd, name, &unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolveBeneath})
	}
	if err != nil {
		return -1, err
	}
	return fd, nil
}

// openStateFile opens name in the host's state dir for reading. It returns
// an error wrapping os.ErrNotExist if there is none, and errNotRegular if
// the name is anything but a regular file (a FIFO, socket, device node,
// directory, or a symlink, which is refused as ELOOP). The file is opened
// non-blocking and never follows a link; maxSize > 0 refuses bigger files.
func openStateFile(dir, name string, maxSize int64) (*os.File, error) {
	dirfd, err := openStateDir(dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dirfd)
	return openFileBeneath(dirfd, dir, name, maxSize)
}

func openFileBeneath(dirfd int, dir, name string, maxSize int64) (*os.File, error) {
	path := dir + "/" + name
	pfd, err := openPathBeneath(dirfd, name)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &os.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w (mode %#o)", errNotRegular, st.Mode&unix.S_IFMT)}
	}
	if maxSize > 0 && st.Size > maxSize {
		return nil, &os.PathError{Op: "open", Path: path, Err: fmt.Errorf("%d bytes; the limit is %d", st.Size, maxSize)}
	}
	// Re-open the very inode checked above for reading: a regular file
	// stays one, whatever happens to the name meanwhile.
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "reopen", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}
