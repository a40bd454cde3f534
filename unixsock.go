package sbx

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The API's Unix socket. `sbx serve` serves the same API on a Unix socket
// as on TCP (by default <data-dir>/api.sock); a client on the same machine
// reaches it with a URL of the form unix:///path/to/api.sock (Docker's
// form), in WithURL, SBX_URL or the credentials file. A client whose URL
// comes from the credentials file (SBX_URL and WithURL unset) uses the
// socket the file names ("unix_socket", written by `sbx serve`), when
// this process can connect to it: a local server's clients get it without
// configuration, and a client in another mount namespace (a container
// with only the credentials file) or without the right to the socket
// keeps to TCP. An explicit http:// URL always means TCP.

// unixScheme starts a Unix-socket URL.
const unixScheme = "unix://"

// unixBaseURL is the HTTP base URL of requests sent over a Unix socket: a
// name that routes to the API (never to a published port's host name).
const unixBaseURL = "http://localhost"

// maxSocketPath is the longest socket path a Unix address holds.
const maxSocketPath = 107

// parseUnixURL returns the socket path of a unix:// URL, ok false for
// other URLs; err for a unix:// URL that names no usable path.
func parseUnixURL(u string) (path string, ok bool, err error) {
	rest, ok := strings.CutPrefix(u, unixScheme)
	if !ok {
		return "", false, nil
	}
	if !strings.HasPrefix(rest, "/") || strings.ContainsAny(rest, "?#") {
		return "", true, errorf(ErrInvalidArgument, "INVALID_URL", "server URL %q: a Unix-socket URL is unix:// and an absolute path, e.g. unix:///var/lib/sbx/api.sock", u)
	}
	path = filepath.Clean(rest)
	if len(path) > maxSocketPath {
		return "", true, errorf(ErrInvalidArgument, "INVALID_URL", "server URL %q: the socket path is longer than %d bytes, which a Unix address cannot hold", u, maxSocketPath)
	}
	return path, true, nil
}

// reachableSocket says whether path is a socket this process may connect
// to (connecting needs write permission on it and search on its
// directories), without connecting.
func reachableSocket(path string) bool {
	if path == "" || !filepath.IsAbs(path) || len(path) > maxSocketPath {
		return false
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket {
		return false
	}
	return unix.Access(path, unix.W_OK) == nil
}

// unixDial returns a DialContext that connects to the socket at path
// whatever address it is asked for.
func unixDial(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "unix", path)
	}
}

// isSocketURL says whether u is the unix:// URL of the socket at path (the
// credentials file's server, given by its socket).
func isSocketURL(u, path string) bool {
	p, ok, err := parseUnixURL(u)
	return ok && err == nil && path != "" && p == filepath.Clean(path)
}
