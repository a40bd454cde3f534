package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The API on a Unix socket, for clients on the same machine: the same
// handler as on TCP (Connect over HTTP/1.1 and h2c, the bulk file
// endpoint, /metrics, /healthz), without loopback TCP's cost per message.
//
// Who may connect: the socket is made mode 0666, so that it reaches
// exactly who 127.0.0.1 reaches (every local user), and API keys
// authenticate every call on it as on TCP; the socket is no credential.
// Its directory decides who gets to it: sbx creates a missing one 0755
// and never changes an existing one's mode, so an operator who wants the
// socket for one group makes its directory root:GROUP 0750.

// unixSocketNone turns the socket off in ListenUnix.
const unixSocketNone = "none"

// unixSocketName is the socket's name in the data dir by default.
const unixSocketName = "api.sock"

// maxUnixPath is the longest socket path (sun_path holds 108 bytes, with
// the terminating NUL).
const maxUnixPath = 107

// unixSocketPath returns the socket's path, or "" when it is off.
func (c *Config) unixSocketPath() string {
	switch c.ListenUnix {
	case unixSocketNone:
		return ""
	case "":
		return filepath.Join(c.DataDir, unixSocketName)
	}
	return filepath.Clean(c.ListenUnix)
}

// validateUnix checks ListenUnix.
func (c *Config) validateUnix() error {
	if c.ListenUnix == "" || c.ListenUnix == unixSocketNone {
		return nil
	}
	if !filepath.IsAbs(c.ListenUnix) {
		return fmt.Errorf("listenUnix %q must be an absolute path, or %q to serve on TCP only", c.ListenUnix, unixSocketNone)
	}
	if len(filepath.Clean(c.ListenUnix)) > maxUnixPath {
		return fmt.Errorf("listenUnix %q is longer than %d bytes, which a Unix socket address cannot hold: choose a shorter path", c.ListenUnix, maxUnixPath)
	}
	return nil
}

// listenUnix listens on the Unix socket path. It holds path+".lock"
// (flock) while it listens, so that a second server fails at once, and
// removes a socket that a killed server left behind, but only a socket,
// and only when nothing accepts on it. close stops listening (removing
// the socket) and then lets go of the lock.
func listenUnix(path string) (ln net.Listener, closeFn func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, nil, fmt.Errorf("create the API socket's directory: %w", err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open the API socket's lock: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil, fmt.Errorf("another sbx serve listens on %s (it holds %s.lock): stop it, or choose another socket with --listen-unix (or none)", path, path)
		}
		return nil, nil, fmt.Errorf("lock %s.lock: %w", path, err)
	}
	if err := removeStaleSocket(path); err != nil {
		lock.Close()
		return nil, nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// See the comment at the top: the directory is the access control.
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		lock.Close()
		return nil, nil, fmt.Errorf("chmod the API socket %s: %w", path, err)
	}
	return l, func() { l.Close(); lock.Close() }, nil
}

// removeStaleSocket removes path when it is a socket nothing accepts on
// (a killed server's). Anything else at path is left alone: a file that
// is no socket is an error, and so is a socket that answers.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("API socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("API socket path %s holds a %s, not a socket: remove it or choose another path with --listen-unix", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("a process already accepts connections on %s: stop it, or choose another socket with --listen-unix (or none)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot tell whether %s is in use (%v): remove it if no server runs", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the stale API socket %s: %w", path, err)
	}
	return nil
}
