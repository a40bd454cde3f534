// Package local runs sandboxes on this machine: each sandbox is an OCI
// container (crun by default, runc or runsc by config) on an overlayfs root
// stacked from the image store's unpacked layers, with its own PID, mount,
// network (loopback only), UTS, IPC and cgroup namespaces, under crun and
// runc a user namespace whose root is an unprivileged host uid of a range of
// its own (userns.go), cgroup limits, the default capability set of
// container engines, a deny-list seccomp profile, masked /proc and /sys
// paths, and the static sbx-agent as its PID 1.
//
// Layout of Config.Root:
//
//	<root>/oci/<runtime>/          the OCI runtime's state (its --root), so a
//	                               restarted server finds its containers
//	<root>/oci/bin/crun            a symlink to this process's sealed copy of
//	                               crun, which crun need not clone (crunexe.go)
//	<root>/sb/<16 hex of sha256(id)>/  (root:<uid base> 0710 with a user
//	                               namespace; <root> and <root>/sb are 0711)
//	    record.json                what the sandbox is and how far Create got
//	                               (written atomically, read on restart)
//	    config.json                the OCI bundle's spec
//	    rootfs/                    the overlay mount point (root.path)
//	    upper/ work/               the overlay's writable layer
//	    lower/<i>/                 idmapped layers, attached only while
//	                               Create mounts the overlay (rootfs.go)
//	    state/                     the agent's state dir (/.sbx/state inside):
//	                               socket, main command's log and exit file
//	    console.log                stdio of the OCI runtime and the agent
//
// Sandbox dirs are named by a hash of the id, not the id, so that the agent's
// socket path stays under the 108-byte limit of Unix socket addresses.
//
// The state dir is the one host dir a sandbox can write: the runtime reads
// it only through internal/agent's host-side functions, and talks to the
// agent through one shared client per sandbox whose connections are
// accepted only if their listener is the container's PID 1, or under runsc
// (gVisor) the container's gofer (dialAgent; runsc.go has what else differs
// under gVisor).
//
// Sandboxes outlive the process that made them. New re-attaches to the
// running ones, releases what dead ones held (keeping their exit status and
// log until Delete), and removes whatever a killed Create left half made.
package local
