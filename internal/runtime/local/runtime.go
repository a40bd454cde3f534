package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sbx-run/sbx/internal/agent"
	"github.com/sbx-run/sbx/internal/image"
	"github.com/sbx-run/sbx/internal/network"
	"github.com/sbx-run/sbx/internal/sandbox"
)

// Config configures a Runtime. cmd/ builds it from the server config.
type Config struct {
	// Root holds the per-sandbox dirs and the OCI runtime's state, e.g.
	// <data-dir>/sandboxes. At most 70 bytes, so that agent socket paths
	// fit a Unix socket address.
	Root string
	// RunRoot, when set, holds the per-sandbox dirs and the OCI runtime's
	// state instead of Root, and Root only the sandboxes' state dirs: a
	// tmpfs (OpenRunRoot; see runroot.go). At most 70 bytes, as Root.
	RunRoot string
	// Runtime is the OCI runtime: "crun" (default), "runc" or "runsc".
	Runtime string
	// RuntimePath is the runtime binary; empty is FindRuntime's choice.
	RuntimePath string
	// AgentPath is the host path of the static sbx-agent binary.
	AgentPath string
	// Images is the image store sandboxes are created from.
	Images *image.Store
	// Defaults are the limits used where a Spec leaves a resource at 0;
	// zero fields here default to one core, 1 GiB and 4096 processes.
	Defaults sandbox.Resources
	// CgroupParent is the cgroup under which each sandbox gets <parent>/<id>
	// in every hierarchy; default "sbx".
	CgroupParent string
	// StartTimeout bounds how long Create waits for the agent to answer;
	// default 30s.
	StartTimeout time.Duration
	// AttachTimeout bounds how long New waits for the agent of a sandbox it
	// re-attaches to; default 2s.
	AttachTimeout time.Duration
	// Network gives each sandbox a network of its own (network.go); nil
	// leaves sandboxes with loopback only. The Runtime must be its only
	// user: New tears down the networks of sandboxes it does not have.
	Network *network.Manager
	// Disk, when set, holds each sandbox's writable layer in a btrfs
	// subvolume of its own, limited to Resources.DiskBytes (disk.go); nil
	// leaves the layers under Root, unbounded, and refuses disk limits.
	Disk *DiskPool
	// UserNS is UserNSAuto (the default), UserNSOn or UserNSOff: whether
	// sandboxes under crun and runc run in a user namespace of their own
	// whose root is an unprivileged host uid (userns.go). runsc never
	// gets one from us: gVisor's Sentry is the boundary there.
	UserNS string
	// MaxUserNamespaces bounds the sandboxes with a user namespace that
	// live at once; 0 (and anything larger) is MaxUserNamespaces.
	MaxUserNamespaces int
	// UserNSClaimDir is where the servers of this host claim uid ranges,
	// so that no two sandboxes of any of them share one; default
	// DefaultUserNSClaimDir. Every server of a host must use the same.
	UserNSClaimDir string
}

// Resource bounds a Spec (or Config.Defaults) must stay within.
const (
	MaxCPUMillis   = 256_000
	MinMemoryBytes = 16 << 20
	MaxMemoryBytes = 1 << 40
	MinPids        = 8
	MaxPids        = 1 << 22
)

const maxRootLen = 70

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func (c *Config) setDefaults() error {
	if c.Runtime == "" {
		c.Runtime = "crun"
	}
	switch c.Runtime {
	case "crun", "runc", "runsc":
	default:
		return fmt.Errorf("runtime %q is not supported: use crun, runc or runsc", c.Runtime)
	}
	if c.Root == "" || !filepath.IsAbs(c.Root) {
		return fmt.Errorf("root %q must be an absolute path", c.Root)
	}
	c.Root = filepath.Clean(c.Root)
	if len(c.Root) > maxRootLen {
		return fmt.Errorf("root %q is longer than %d bytes: agent socket paths under it would not fit a Unix socket address; choose a shorter data dir", c.Root, maxRootLen)
	}
	if c.RunRoot != "" {
		if !filepath.IsAbs(c.RunRoot) {
			return fmt.Errorf("run root %q must be an absolute path", c.RunRoot)
		}
		c.RunRoot = filepath.Clean(c.RunRoot)
		if len(c.RunRoot) > maxRootLen {
			return fmt.Errorf("run root %q is longer than %d bytes: agent socket paths under it would not fit a Unix socket address", c.RunRoot, maxRootLen)
		}
	}
	if c.Images == nil {
		return errors.New("no image store configured")
	}
	if c.AgentPath == "" {
		return errors.New("no agent binary configured: build cmd/sbx-agent statically and set its path")
	}
	if st, err := os.Stat(c.AgentPath); err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("agent binary %q is not an executable file", c.AgentPath)
	}
	if c.CgroupParent == "" {
		c.CgroupParent = "sbx"
	}
	if !namePattern.MatchString(c.CgroupParent) {
		return fmt.Errorf("cgroup parent %q is invalid: use letters, digits, '.', '_' or '-'", c.CgroupParent)
	}
	if c.Defaults.CPUMillis == 0 {
		c.Defaults.CPUMillis = 1000
	}
	if c.Defaults.MemoryBytes == 0 {
		c.Defaults.MemoryBytes = 1 << 30
	}
	if c.Defaults.Pids == 0 {
		c.Defaults.Pids = 4096
	}
	if c.Defaults.DiskBytes != 0 && c.Disk == nil {
		return errors.New("a default disk limit needs a disk pool (Config.Disk)")
	}
	if err := checkResources(c.Defaults); err != nil {
		return fmt.Errorf("default resources: %w", err)
	}
	if err := checkRuntimeResources(c.Runtime, c.Defaults); err != nil {
		return fmt.Errorf("default resources: %w", err)
	}
	switch c.UserNS {
	case "":
		c.UserNS = UserNSAuto
	case UserNSAuto, UserNSOn, UserNSOff:
	default:
		return fmt.Errorf("user namespace mode %q is invalid: use auto, on or off", c.UserNS)
	}
	if c.UserNSClaimDir == "" {
		c.UserNSClaimDir = DefaultUserNSClaimDir
	}
	if !filepath.IsAbs(c.UserNSClaimDir) {
		return fmt.Errorf("user namespace claim dir %q must be an absolute path", c.UserNSClaimDir)
	}
	if c.MaxUserNamespaces < 0 {
		return fmt.Errorf("max user namespaces %d is negative", c.MaxUserNamespaces)
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 30 * time.Second
	}
	if c.AttachTimeout <= 0 {
		c.AttachTimeout = 2 * time.Second
	}
	return nil
}

func checkResources(r sandbox.Resources) error {
	switch {
	case r.CPUMillis < 0 || r.CPUMillis > MaxCPUMillis:
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "cpu of %d millicores is out of range: use 1 to %d", r.CPUMillis, MaxCPUMillis)
	case r.MemoryBytes != 0 && (r.MemoryBytes < MinMemoryBytes || r.MemoryBytes > MaxMemoryBytes):
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "memory of %d bytes is out of range: use %d MiB to %d GiB", r.MemoryBytes, MinMemoryBytes>>20, MaxMemoryBytes>>30)
	case r.MemoryBytes < 0:
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "memory of %d bytes is negative", r.MemoryBytes)
	case r.Pids != 0 && (r.Pids < MinPids || r.Pids > MaxPids):
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "process limit %d is out of range: use %d to %d", r.Pids, MinPids, MaxPids)
	case r.Pids < 0:
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "process limit %d is negative", r.Pids)
	case r.DiskBytes != 0 && (r.DiskBytes < MinDiskBytes || r.DiskBytes > MaxDiskBytes):
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "disk limit of %d bytes is out of range: use %d MiB to %d GiB", r.DiskBytes, MinDiskBytes>>20, MaxDiskBytes>>30)
	}
	return nil
}

// Runtime runs sandboxes as OCI containers on this machine. It implements
// sandbox.Runtime and is safe for concurrent use.
type Runtime struct {
	cfg    Config
	oci    *ociRuntime
	cg     cgroupMounts
	swap   bool
	nofile uint64
	reaper *reaper
	// bin is the OCI runtime's binary (FindRuntime or Config.RuntimePath);
	// staticSkipped says why sbx's static build, though there, was not it.
	bin           string
	staticSkipped error
	// seccompBPF is crun's compiled form of seccompProfile, base64, once
	// learned (seccomp.go).
	seccompBPF atomic.Pointer[string]
	// parked bounds the memory parked sandboxes hold (park.go).
	parked parkBudget
	// ids hands out sandboxes' uid ranges; nil when sandboxes run
	// without a user namespace (userns.go), and usernsSkipped then says
	// why, if they could have had one.
	ids           *idRanges
	usernsSkipped error
	// runRoot holds the sandbox dirs and the OCI runtime's state: the run
	// root, or Root (runroot.go); dataHome holds the sandboxes' data dirs
	// (state dir, writable layer without a pool) when they are not their
	// sandbox dirs. oldLayout counts the older server's sandbox dirs that
	// kept everything under Root.
	runRoot   string
	dataHome  string
	oldLayout int

	// netPool keeps sandboxes' network namespaces for reuse (netpool.go).
	netPool netnsPool

	mu    sync.Mutex
	boxes map[string]*box
}

var _ sandbox.Runtime = (*Runtime)(nil)

// box is one sandbox this Runtime knows.
type box struct {
	// op serializes Create, Stop and Delete of one sandbox.
	op  sync.Mutex
	dir string
	// state is its agent's state dir (Runtime.stateOf).
	state string

	// mu guards rec, deleted and client, for short reads while op is held.
	mu      sync.Mutex
	rec     record
	deleted bool
	// client is the agent's client every caller shares, so that they share
	// its verified idle connections; made by Create or on first use for
	// the container's PID 1 clientPID.
	client    *agent.Client
	clientPID int

	// netns is the sandbox's network namespace, held from Create to
	// release for reuse (netpool.go); nil without a network, or for a
	// sandbox this runtime found at start (release then tears it down).
	// Guarded by op.
	netns *sandboxNetns
}

// agentClient returns the shared client of b's agent, whose PID 1 rec names.
func (b *box) agentClient(rec record) *agent.Client {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client == nil || b.clientPID != rec.PID {
		if b.client != nil {
			b.client.Close()
		}
		b.client, b.clientPID = dialAgent(b.state, rec), rec.PID
	}
	return b.client
}

// dropClient closes the shared client's idle connection.
func (b *box) dropClient() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.client != nil {
		b.client.Close()
		b.client = nil
	}
}

// closeIdle closes the shared client's idle connections, keeping the client.
func (b *box) closeIdle() {
	b.mu.Lock()
	c := b.client
	b.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// sharedClient is the shared client as callers get it: their Close must
// not close the connection others use.
type sharedClient struct{ *agent.Client }

// Close does nothing: the connection belongs to the sandbox and goes with it.
func (sharedClient) Close() error { return nil }

// New validates cfg, detects the host's cgroup layout, and recovers the
// sandboxes under cfg.Root: it re-attaches to running ones, releases what
// dead ones held, and removes half-made ones.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "local runtime config: %w", err)
	}
	path := cfg.RuntimePath
	var staticSkipped error
	if path == "" {
		p, skipped, err := findRuntime(cfg.Runtime)
		staticSkipped = skipped
		if err != nil {
			return nil, sandbox.Unavailable(sandbox.ReasonRuntimeError, "OCI runtime %s is not installed (apt-get install %s) or set its path in the config: %w", cfg.Runtime, cfg.Runtime, err)
		}
		path = p
	}
	cg, err := detectCgroups()
	if err != nil {
		return nil, sandbox.Unavailable(sandbox.ReasonRuntimeError, "detect cgroups: %w", err)
	}
	if cg.layout == CgroupHybrid && cfg.Runtime == "crun" {
		return nil, sandbox.FailedPrecondition(sandbox.ReasonRuntimeError,
			"crun cannot run on a hybrid cgroup host while %s is mounted: call local.EnterMountNamespace first (sbx serve does), or use runc", cg.v2)
	}
	nofile, err := nofileLimit()
	if err != nil {
		return nil, sandbox.Internal("%w", err)
	}
	rp, err := startReaper()
	if err != nil {
		return nil, sandbox.Internal("%w", err)
	}
	r := &Runtime{
		cfg:           cfg,
		cg:            cg,
		swap:          swapAccounted(cg),
		nofile:        nofile,
		reaper:        rp,
		bin:           path,
		staticSkipped: staticSkipped,
		boxes:         map[string]*box{},
	}
	r.layout()
	r.oci = newOCIRuntime(cfg.Runtime, path, filepath.Join(r.runRoot, "oci", cfg.Runtime))
	if cfg.Runtime == "runsc" {
		r.oci.flags = runscFlags(r.networked())
	}
	dirs := []string{r.oci.root, r.sbRoot()}
	if r.dataHome != "" {
		dirs = append(dirs, r.dataHome)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, sandbox.Internal("create %s: %w", d, err)
		}
	}
	if cfg.Runtime == "crun" {
		// Without the sealed copy crun still works, at its own cost.
		if link, err := crunLink(path, filepath.Join(cfg.Root, "oci", "bin")); err == nil {
			r.oci.path = link
		}
	}
	if err := r.setupUserns(); err != nil {
		return nil, err
	}
	if err := r.recover(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// swapAccounted reports whether the memory cgroup can limit swap; a spec
// with a swap limit fails on hosts where it cannot.
func swapAccounted(cg cgroupMounts) bool {
	if cg.memory == "" {
		return false
	}
	if cg.layout == CgroupV2 {
		// The root has no memory.swap.max; the kernel accounts swap if a
		// child cgroup has one.
		m, _ := filepath.Glob(filepath.Join(cg.v2, "*", "memory.swap.max"))
		return len(m) > 0
	}
	_, err := os.Stat(filepath.Join(cg.memory, "memory.memsw.limit_in_bytes"))
	return err == nil
}

// RuntimeBinary is the OCI runtime binary this Runtime runs.
func (r *Runtime) RuntimeBinary() string { return r.bin }

// StaticSkipped says why sbx's static build of the OCI runtime, which is
// installed, is not the binary this Runtime runs (StaticRuntime), or nil.
func (r *Runtime) StaticSkipped() error { return r.staticSkipped }

// UserNamespaces reports whether sandboxes run in user namespaces of their
// own, and when not although Config.UserNS is auto, why.
func (r *Runtime) UserNamespaces() (bool, error) { return r.ids != nil, r.usernsSkipped }

// CgroupLayout is the host's cgroup layout as this Runtime sees it.
func (r *Runtime) CgroupLayout() CgroupLayout { return r.cg.layout }

// dirOf is a sandbox's dir: named by a hash of the id to keep socket paths
// short.
func (r *Runtime) dirOf(id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(r.sbRoot(), hex.EncodeToString(sum[:8]))
}

// stateDir is the state dir in a sandbox's data dir (Runtime.stateOf).
func stateDir(data string) string { return filepath.Join(data, "state") }

// socketIn is the agent's socket in state dir state.
func socketIn(state string) string { return filepath.Join(state, agent.SocketName) }

// lookup returns the sandbox with id, or NotFound.
func (r *Runtime) lookup(id string) (*box, error) {
	r.mu.Lock()
	b := r.boxes[id]
	r.mu.Unlock()
	if b == nil {
		return nil, sandbox.NotFound(sandbox.ReasonSandboxNotFound, "sandbox %q does not exist on this host", id)
	}
	return b, nil
}

// snapshot returns a copy of b's record and whether b was deleted.
func (b *box) snapshot() (record, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rec, b.deleted
}

func (b *box) setRecord(rec record) {
	b.mu.Lock()
	b.rec = rec
	b.mu.Unlock()
}
