package daemon

import (
	"net"

	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"
)

// connectionLimit is how many API connections the server serves at once
// when the config leaves it 0: half of the process's open-file limit,
// which leaves the other half for agent connections, sandboxes' files and
// the store. Past it, new connections wait in the kernel's accept queue
// until one closes (idle keep-alive ones close after 2 minutes, ones that
// send no request after 10 s).
func connectionLimit(configured int) int {
	if configured > 0 {
		return configured
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY {
		return 1 << 16
	}
	return max(int(rl.Cur/2), 1024)
}

// limitConnections bounds the connections ln hands out at once to n.
func limitConnections(ln net.Listener, n int) net.Listener { return netutil.LimitListener(ln, n) }
