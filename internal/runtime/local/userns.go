package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/usermap"
)

// Under crun and runc each sandbox runs in a user namespace of its own
// that maps its uids and gids 0..65535 to a host range of its own,
// [base, base+65535], so that its root is an unprivileged host uid that
// owns no host file and shares no process with another sandbox: a kernel
// or runtime escape ends as a nobody on the host, not as root.
//
// The ranges lie above every uid a host hands out: slot i is
// [usernsBase + i*usernsSize, usernsBase + (i+1)*usernsSize - 1], with
// usernsBase = 2^30 (1073741824). useradd hands out uids below 60000
// (login.defs UID_MAX), systemd's dynamic users 61184..65519, and
// subordinate ranges for rootless containers (/etc/subuid, /etc/subgid)
// start at 100000 and end below 600100000 by default. The one other
// allocator that reaches 2^30 is systemd-nspawn's PrivateUsers=pick
// (0x80000..0x6FFFFFFF), which sbx's hosts are not expected to run.
// setupUserns checks /etc/passwd, /etc/group, /etc/subuid and /etc/subgid
// (checkHostIDs): when any reaches a range, sandboxes run without user
// namespaces (UserNSAuto, with the reason) or New fails (UserNSOn).
//
// The image's layers are shared by every sandbox and never chowned: each
// sandbox's overlay stacks idmapped mounts of them (mount_setattr with
// MOUNT_ATTR_IDMAP, rootfs.go), through which a file owned by uid u on disk
// is owned by base+u, which is u inside the sandbox. What the sandbox
// writes lands in its upper dir as base+u, and what the host writes for it
// (its state dir, /etc/hosts, /etc/hostname, /etc/resolv.conf, the roots
// of its upper dir) is chowned to base.
const (
	usernsBase = 1 << 30
	usernsSize = 1 << 16
	// MaxUserNamespaces is how many sandboxes with a user namespace one
	// Runtime can hold at once: the slots that fit between usernsBase and
	// the last valid uid (2^32-2; uid 2^32-1 is the kernel's "no uid").
	MaxUserNamespaces = (1<<32-usernsBase)/usernsSize - 1
)

// The modes of Config.UserNS.
const (
	// UserNSAuto gives sandboxes under crun and runc user namespaces when
	// the kernel can mount their overlay from idmapped layers, and runs
	// them without one (sandbox root = host root) when it cannot.
	UserNSAuto = "auto"
	// UserNSOn requires user namespaces under crun and runc: New fails on
	// a kernel that cannot give them.
	UserNSOn = "on"
	// UserNSOff runs sandboxes without a user namespace.
	UserNSOff = "off"
)

// idRanges hands out the uid/gid slots of live sandboxes and keeps one
// user namespace per slot, with the slot's mapping, that the slot's idmapped
// mounts use: made the first time the slot is used, reused by every later
// sandbox of the slot (making one costs a process; holding one costs a
// file descriptor and a few hundred bytes of kernel memory).
//
// Several servers may run on one host (each with its own data dir), so a
// slot is claimed host-wide: claims/<slot> is a symlink to the holding
// sandbox's dir, made with symlink(2)'s exclusive create under an flock of
// claims/lock that every server takes for its claims and frees. A claim
// whose sandbox dir no longer exists (a server killed between removing a
// sandbox and freeing its slot) is stale and taken over. claims lives in
// /run, a tmpfs: a reboot, which ends every sandbox, clears it.
type idRanges struct {
	// maker makes the slots' user namespaces in a small helper process
	// (the agent binary), never by forking the server (internal/usermap).
	maker  *usermap.Maker
	claims string
	lock   *os.File

	mu    sync.Mutex
	owner map[int]string // slot → the holding sandbox's dir
	limit int
	low   int // where the next search starts
	ns    map[int]*os.File
	// want is the slot below which the warmer makes namespaces ahead
	// (warmAhead); warming says it runs; closed stops it.
	want    int
	warming bool
	closed  bool
}

// usernsSpare is how many slots past the highest one handed out get their
// user namespace made ahead of need. Making one forks the server (a user
// namespace cannot be made with vfork), which on a busy host costs tens of
// milliseconds: made ahead, in the background, a create only looks it up.
const usernsSpare = 16

// warmAhead has the slots below slot+usernsSpare+1 get their namespaces,
// made one at a time by a single background goroutine. Callers hold a.mu.
func (a *idRanges) warmAheadLocked(slot int) {
	a.want = max(a.want, min(slot+usernsSpare+1, a.limit))
	if a.warming || a.closed {
		return
	}
	a.warming = true
	go a.warm()
}

// warm makes the missing namespaces of the slots below a.want.
func (a *idRanges) warm() {
	for s := 0; ; s++ {
		a.mu.Lock()
		if s >= a.want || a.closed {
			a.warming = false
			a.mu.Unlock()
			return
		}
		have := a.ns[s] != nil
		a.mu.Unlock()
		if !have {
			if _, err := a.userns(baseOf(s)); err != nil {
				// Create makes it itself when it needs it, and says why.
				a.mu.Lock()
				a.warming = false
				a.mu.Unlock()
				return
			}
		}
	}
}

// DefaultUserNSClaimDir is where servers claim uid ranges host-wide.
const DefaultUserNSClaimDir = "/run/sbx/userns"

func newIDRanges(helper, claims string, limit int) (*idRanges, error) {
	if limit <= 0 || limit > MaxUserNamespaces {
		limit = MaxUserNamespaces
	}
	if err := os.MkdirAll(claims, 0o700); err != nil {
		return nil, fmt.Errorf("create the uid range claim dir %s: %w", claims, err)
	}
	lock, err := os.OpenFile(filepath.Join(claims, "lock"), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the uid range claim lock: %w", err)
	}
	return &idRanges{maker: usermap.NewMaker(helper), claims: claims, lock: lock, owner: map[int]string{}, limit: limit, ns: map[int]*os.File{}}, nil
}

// baseOf is the first host uid of slot.
func baseOf(slot int) uint32 { return usernsBase + uint32(slot)*usernsSize }

// slotOf is the slot whose range starts at base, or false.
func slotOf(base uint32) (int, bool) {
	if base < usernsBase || (base-usernsBase)%usernsSize != 0 {
		return 0, false
	}
	s := int((base - usernsBase) / usernsSize)
	return s, s < MaxUserNamespaces
}

// locked runs fn holding a.mu and the host-wide claim lock.
func (a *idRanges) locked(fn func() error) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := unix.Flock(int(a.lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock the uid range claims: %w", err)
	}
	defer unix.Flock(int(a.lock.Fd()), unix.LOCK_UN)
	return fn()
}

func (a *idRanges) claimPath(slot int) string {
	return filepath.Join(a.claims, strconv.Itoa(slot))
}

// take claims slot host-wide for the sandbox in dir, unless a live sandbox
// (of this server or another) holds it. The claim lock is held.
func (a *idRanges) take(slot int, dir string) (bool, error) {
	p := a.claimPath(slot)
	for range 2 {
		err := os.Symlink(dir, p)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return false, fmt.Errorf("claim uid range %d: %w", slot, err)
		}
		holder, err := os.Readlink(p)
		if err != nil {
			return false, fmt.Errorf("read the claim of uid range %d: %w", slot, err)
		}
		if holder == dir {
			return true, nil
		}
		if _, err := os.Lstat(holder); !errors.Is(err, os.ErrNotExist) {
			return false, nil // a live sandbox's
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("remove the stale claim of uid range %d: %w", slot, err)
		}
	}
	return false, nil
}

// alloc gives the sandbox in dir a free slot, the lowest past the last one
// handed out, and returns its base.
func (a *idRanges) alloc(dir string) (uint32, error) {
	var base uint32
	err := a.locked(func() error {
		for i := range a.limit {
			s := (a.low + i) % a.limit
			if _, used := a.owner[s]; used {
				continue
			}
			ok, err := a.take(s, dir)
			if err != nil {
				return err
			}
			if ok {
				a.owner[s] = dir
				a.low, base = s+1, baseOf(s)
				a.warmAheadLocked(s)
				return nil
			}
		}
		return sandbox.Errorf(sandbox.ErrResourceExhausted, sandbox.ReasonRuntimeError,
			"all %d user namespace uid ranges are in use by live sandboxes of this host's servers: delete sandboxes, or retry once others are gone", a.limit)
	})
	return base, err
}

// claim marks the slot of base as held by the sandbox in dir (recovery).
func (a *idRanges) claim(dir string, base uint32) error {
	s, ok := slotOf(base)
	if !ok {
		return fmt.Errorf("sandbox %s: uid base %d is not one of sbx's ranges", dir, base)
	}
	return a.locked(func() error {
		if other, used := a.owner[s]; used && other != dir {
			return fmt.Errorf("sandboxes %s and %s both hold the uid range at %d", other, dir, base)
		}
		ok, err := a.take(s, dir)
		if err != nil {
			return err
		}
		if !ok {
			holder, _ := os.Readlink(a.claimPath(s))
			return fmt.Errorf("sandbox %s holds the uid range at %d, which %s claims: two sandboxes share a uid range; delete one", dir, base, holder)
		}
		a.owner[s] = dir
		return nil
	})
}

// free releases the slot of base if the sandbox in dir holds it.
func (a *idRanges) free(dir string, base uint32) error {
	s, ok := slotOf(base)
	if !ok {
		return nil
	}
	return a.locked(func() error {
		if a.owner[s] != dir {
			return nil
		}
		delete(a.owner, s)
		a.low = min(a.low, s)
		p := a.claimPath(s)
		if holder, err := os.Readlink(p); err != nil || holder != dir {
			return nil // not ours (any more)
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("free uid range %d: %w", s, err)
		}
		return nil
	})
}

// inUse is how many slots live sandboxes hold.
func (a *idRanges) inUse() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.owner)
}

// userns returns the user namespace of the slot whose range starts at base
// (an nsfs file that stays open, owned by a).
func (a *idRanges) userns(base uint32) (*os.File, error) {
	s, ok := slotOf(base)
	if !ok {
		return nil, fmt.Errorf("uid base %d is not one of sbx's ranges", base)
	}
	a.mu.Lock()
	f := a.ns[s]
	a.mu.Unlock()
	if f != nil {
		return f, nil
	}
	f, err := a.maker.Make(base)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.ns[s]; old != nil {
		f.Close() // made meanwhile by another Create of the slot
		return old, nil
	}
	if a.closed {
		f.Close()
		return nil, errors.New("the runtime's user namespaces are closed")
	}
	a.ns[s] = f
	return f, nil
}

// close drops the cached namespaces.
func (a *idRanges) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	a.maker.Close()
	for s, f := range a.ns {
		f.Close()
		delete(a.ns, s)
	}
	a.lock.Close()
}

// idmapped returns a detached copy of the mount of dir whose ids are
// mapped through userns: a file of uid u in dir is owned by the host uid
// userns maps u to.
func idmapped(dir string, userns *os.File) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("open_tree %s: %w", dir, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("idmap the mount of %s: %w", dir, err)
	}
	return fd, nil
}

// chownToSandbox makes paths (not following symlinks) owned by the
// sandbox's root: host uid and gid base. base 0 (no user namespace) leaves
// them to host root.
func chownToSandbox(base uint32, paths ...string) error {
	if base == 0 {
		return nil
	}
	for _, p := range paths {
		if err := os.Lchown(p, int(base), int(base)); err != nil {
			return err
		}
	}
	return nil
}

// setupUserns decides whether sandboxes get user namespaces: never under
// runsc or with UserNSOff; with UserNSAuto when the probe below works;
// with UserNSOn it must.
func (r *Runtime) setupUserns() error {
	if r.cfg.Runtime == "runsc" || r.cfg.UserNS == UserNSOff {
		return nil
	}
	ids, err := newIDRanges(r.cfg.AgentPath, r.cfg.UserNSClaimDir, r.cfg.MaxUserNamespaces)
	if err != nil {
		if r.cfg.UserNS == UserNSOn {
			return sandbox.FailedPrecondition(sandbox.ReasonRuntimeError, "user namespaces for sandboxes (--userns=on): %v", err)
		}
		r.usernsSkipped = err
		return nil
	}
	err = checkHostIDs(ids.limit)
	if err == nil {
		err = r.rootAccess()
	}
	if err == nil {
		err = probeUserns(ids, r.cfg.Root)
	}
	if err != nil {
		ids.close()
		if r.cfg.UserNS == UserNSOn {
			return sandbox.FailedPrecondition(sandbox.ReasonRuntimeError,
				"user namespaces for sandboxes (--userns=on) are not possible here: %v; fix that (they need overlayfs with idmapped layers, Linux 5.19 or later, and an image store on a filesystem with idmapped mounts: ext4, xfs, btrfs), or run with --userns=off (sandbox root is then host root)", err)
		}
		r.usernsSkipped = err
		return nil
	}
	r.ids = ids
	return nil
}

// probeUserns mounts a one-layer overlay of an idmapped layer in a scratch
// dir under root, as Create does, and checks that the host sees the
// layer's file in the range.
func probeUserns(ids *idRanges, root string) error {
	dir, err := os.MkdirTemp(root, "userns-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lower, upper, work, target := filepath.Join(dir, "l"), filepath.Join(dir, "u"), filepath.Join(dir, "w"), filepath.Join(dir, "m")
	for _, d := range []string{lower, upper, work, target} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(lower, "f"), nil, 0o600); err != nil {
		return err
	}
	base := baseOf(0)
	ns, err := ids.userns(base)
	if err != nil {
		return err
	}
	if err := chownToSandbox(base, upper); err != nil {
		return err
	}
	if err := mountOverlayIDMapped([]string{lower}, upper, work, target, filepath.Join(dir, "s"), false, ns); err != nil {
		return err
	}
	defer unmount(target)
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(target, "f"), &st); err != nil {
		return err
	}
	if st.Uid != base || st.Gid != base {
		return fmt.Errorf("a file of uid 0 in an idmapped overlay layer shows uid %d gid %d, not %d", st.Uid, st.Gid, base)
	}
	return nil
}

// checkHostIDs refuses ranges that a host user or a subordinate id range
// (/etc/subuid, /etc/subgid, as newuidmap hands them to rootless
// containers) reaches: files and processes of such a user would be a
// sandbox's.
func checkHostIDs(slots int) error {
	return checkIDFiles(slots, []string{"/etc/subuid", "/etc/subgid"}, []string{"/etc/passwd", "/etc/group"})
}

// checkIDFiles is checkHostIDs on the given subordinate id files and
// user and group databases.
func checkIDFiles(slots int, subFiles, dbFiles []string) error {
	lo, hi := uint64(usernsBase), uint64(usernsBase)+uint64(slots)*usernsSize // [lo, hi)
	for _, f := range subFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Split(strings.TrimSpace(line), ":")
			if len(fs) != 3 {
				continue
			}
			start, err1 := strconv.ParseUint(fs[1], 10, 32)
			count, err2 := strconv.ParseUint(fs[2], 10, 32)
			if err1 == nil && err2 == nil && start < hi && start+count > lo {
				return fmt.Errorf("%s gives %s the ids %d..%d, which overlap sbx's sandbox ranges %d..%d: move that range below %d", f, fs[0], start, start+count-1, lo, hi-1, lo)
			}
		}
	}
	for _, f := range dbFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Split(line, ":")
			if len(fs) < 3 {
				continue
			}
			if id, err := strconv.ParseUint(fs[2], 10, 32); err == nil && id >= lo && id < hi {
				return fmt.Errorf("%s has %s with id %d, inside sbx's sandbox ranges %d..%d", f, fs[0], id, lo, hi-1)
			}
		}
	}
	return nil
}

// The OCI runtime sets up a sandbox's mounts from inside its user
// namespace, as the sandbox's root (host uid base), which must therefore
// be able to reach the rootfs and the bind mounts' sources in the sandbox
// dir and its state dir: Root, the run root, the dir of the sandbox dirs
// and the dir of the state dirs are searchable by all (0711: no listing,
// and the sandbox dirs' names are hashes), and each sandbox dir only by
// its own root's group (root:base 0710), so no other host user and no
// other sandbox can enter it; its state dir is its root's own.

// rootAccess opens the dirs this Runtime keeps sandboxes' files in for
// search and checks that every dir above them is searchable by all.
func (r *Runtime) rootAccess() error {
	dirs := []string{r.cfg.Root, r.runRoot, r.sbRoot()}
	if r.dataHome != "" {
		dirs = append(dirs, r.dataHome)
	}
	for _, root := range dirs {
		for d := filepath.Dir(root); ; d = filepath.Dir(d) {
			st, err := os.Stat(d)
			if err != nil {
				return err
			}
			if st.Mode().Perm()&0o001 == 0 {
				return fmt.Errorf("%s (mode %v) is not searchable by other users, so a sandbox's root (an unprivileged host uid) cannot reach its files under %s: chmod o+x %s", d, st.Mode().Perm(), root, d)
			}
			if d == "/" {
				break
			}
		}
		if err := os.Chmod(root, 0o711); err != nil {
			return err
		}
	}
	return nil
}

// sandboxDirAccess lets the sandbox's root, and only it, search dir.
func sandboxDirAccess(dir string, base uint32) error {
	if err := os.Lchown(dir, 0, int(base)); err != nil {
		return err
	}
	return os.Chmod(dir, 0o710)
}
