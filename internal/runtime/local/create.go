package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Create pulls the image if needed, mounts the sandbox's overlay root, runs
// the container with the agent as PID 1 and returns once the agent answers.
// On any failure, or when ctx ends first, it removes everything it made.
func (r *Runtime) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Info, error) {
	if err := validID(spec.ID); err != nil {
		return sandbox.Info{}, err
	}
	if err := checkResources(spec.Resources); err != nil {
		return sandbox.Info{}, err
	}
	if spec.Image == "" {
		spec.Image = sandbox.DefaultImage
	}
	if len(spec.Image) > 1024 {
		return sandbox.Info{}, sandbox.InvalidArgument(sandbox.ReasonInvalidImageRef, "image reference is %d bytes long: the limit is 1024", len(spec.Image))
	}
	res := spec.Resources
	if res.CPUMillis == 0 {
		res.CPUMillis = r.cfg.Defaults.CPUMillis
	}
	if res.MemoryBytes == 0 {
		res.MemoryBytes = r.cfg.Defaults.MemoryBytes
	}
	if res.Pids == 0 {
		res.Pids = r.cfg.Defaults.Pids
	}
	if res.DiskBytes == 0 {
		res.DiskBytes = r.cfg.Defaults.DiskBytes
	}
	if res.DiskBytes != 0 && r.cfg.Disk == nil {
		return sandbox.Info{}, sandbox.FailedPrecondition(sandbox.ReasonInvalidSpec, "sandbox %q asks for a disk limit, but this server runs without disk limits (--disk-limits=off): leave disk_bytes at 0", spec.ID)
	}
	if err := checkRuntimeResources(r.cfg.Runtime, res); err != nil {
		return sandbox.Info{}, err
	}

	dir := r.dirOf(spec.ID)
	b := &box{dir: dir, state: r.stateOf(dir)}
	b.op.Lock()
	defer b.op.Unlock()
	r.mu.Lock()
	if r.boxes[spec.ID] != nil {
		r.mu.Unlock()
		return sandbox.Info{}, sandbox.Errorf(sandbox.ErrAlreadyExists, sandbox.ReasonSandboxExists, "sandbox %q already exists: choose another id or delete it first", spec.ID)
	}
	if err := os.Mkdir(b.dir, 0o700); err != nil {
		r.mu.Unlock()
		if errors.Is(err, os.ErrExist) {
			return sandbox.Info{}, sandbox.Errorf(sandbox.ErrAlreadyExists, sandbox.ReasonSandboxExists, "sandbox %q already exists on disk (made by another server on the same root?)", spec.ID)
		}
		return sandbox.Info{}, sandbox.Internal("create sandbox dir: %w", err)
	}
	b.rec = record{
		ID: spec.ID, Phase: phaseCreating, Image: spec.Image, Resources: res,
		Runtime: r.cfg.Runtime, CreatedAt: time.Now().UTC(), Network: spec.Network,
	}
	r.boxes[spec.ID] = b
	r.mu.Unlock()

	info, err := r.create(ctx, b)
	if err != nil {
		r.teardown(context.WithoutCancel(ctx), b)
		r.forget(b)
		if ctx.Err() != nil {
			return sandbox.Info{}, sandbox.Errorf(sandbox.ErrDeadlineExceeded, sandbox.ReasonRuntimeError,
				"create of sandbox %q was cancelled or timed out; nothing was left behind: %w", spec.ID, ctx.Err())
		}
		return sandbox.Info{}, err
	}
	return info, nil
}

// create does the work of Create; the caller tears down on error.
func (r *Runtime) create(ctx context.Context, b *box) (sandbox.Info, error) {
	rec := b.rec
	if r.ids != nil {
		base, err := r.ids.alloc(b.dir)
		if err != nil {
			return sandbox.Info{}, err
		}
		// Freed by teardown, which every failed Create and every Delete
		// runs, once nothing of the sandbox is left.
		rec.UIDBase = base
		b.setRecord(rec)
		if err := sandboxDirAccess(b.dir, base); err != nil {
			return sandbox.Info{}, sandbox.Internal("sandbox %q: %w", rec.ID, err)
		}
	}
	// The record is written twice: before anything that must be undone
	// exists (Use, the mounts, the container), and once the agent answered.
	// Whatever exists in between, recovery finds through the first (see
	// recoverOne and release); a dir without a record, left by a crash
	// before it, holds nothing else.
	img, err := r.cfg.Images.Get(ctx, rec.Image, nil)
	if err != nil {
		return sandbox.Info{}, err
	}
	rec.ImageRef, rec.Digest, rec.Config = img.Ref, img.Digest, img.Config
	// Record the digest before Use, so a crash in between still releases.
	if err := writeRecord(b.dir, &rec); err != nil {
		return sandbox.Info{}, sandbox.Internal("write sandbox record: %w", err)
	}
	b.setRecord(rec)
	if err := r.cfg.Images.Use(img.Digest, rec.ID); err != nil {
		return sandbox.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return sandbox.Info{}, err
	}

	if err := r.makeDataDir(b.dir, rec.UIDBase); err != nil {
		return sandbox.Info{}, sandbox.Internal("sandbox %q data dir: %w", rec.ID, err)
	}
	rootfs := filepath.Join(b.dir, "rootfs")
	upper, work, err := r.writableLayer(b.dir, rec.Resources.DiskBytes)
	if se := (*sandbox.Error)(nil); errors.As(err, &se) {
		return sandbox.Info{}, err // the disk pool's refusal (DISK_POOL_FULL)
	} else if err != nil {
		return sandbox.Info{}, sandbox.Internal("sandbox %q writable layer: %w", rec.ID, err)
	}
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return sandbox.Info{}, sandbox.Internal("create %s: %w", rootfs, err)
	}
	if err := os.Mkdir(b.state, 0o755); err != nil {
		return sandbox.Info{}, sandbox.Internal("create %s: %w", b.state, err)
	}
	// The sandbox's root owns its writable layer's root and its state dir.
	if err := chownToSandbox(rec.UIDBase, upper, b.state); err != nil {
		return sandbox.Info{}, sandbox.Internal("sandbox %q: %w", rec.ID, err)
	}
	layers := img.Layers
	if len(layers) == 0 {
		// overlayfs needs a lowerdir; an image without layers gets an empty one.
		empty := filepath.Join(b.dir, "empty")
		if err := os.Mkdir(empty, 0o755); err != nil {
			return sandbox.Info{}, sandbox.Internal("create %s: %w", empty, err)
		}
		layers = []string{empty}
	}
	// Mounted right before the OCI runtime starts, in the mount namespace
	// it starts in (spawnns.go).
	mountRoot := func() error {
		if rec.UIDBase != 0 {
			ns, err := r.ids.userns(rec.UIDBase)
			if err == nil {
				err = mountOverlayIDMapped(layers, upper, work, rootfs, scratchDir(b.dir), r.cfg.Disk != nil, ns)
			}
			return err
		}
		return mountOverlay(layers, upper, work, rootfs, r.cfg.Disk != nil)
	}

	// A sysfs of the sandbox's network namespace, mounted by us where the
	// runtime binds it from (sysfsMount); gVisor has its own.
	var sysfs string
	if r.netnsFirst() && r.oci.name != "runsc" {
		sysfs = filepath.Join(b.dir, sysfsDir)
		if err := os.Mkdir(sysfs, 0o555); err != nil {
			return sandbox.Info{}, sandbox.Internal("create %s: %w", sysfs, err)
		}
	}
	spec := buildSpec(specInput{
		id: rec.ID, rootfs: rootfs, agentPath: r.cfg.AgentPath, stateDir: b.state,
		cgroups: cgroupsPath(r.cfg.CgroupParent, rec.ID), res: rec.Resources, swap: r.swap, nofile: r.nofile,
		uidBase: rec.UIDBase, netnsByPath: r.netnsFirst(), sysfs: sysfs,
	})
	mounts, err := r.networkMounts(b.dir, rec.Network)
	if err != nil {
		return sandbox.Info{}, sandbox.Internal("sandbox %q: %w", rec.ID, err)
	}
	spec.Mounts = append(spec.Mounts, mounts...)
	etc, err := etcMounts(b.dir, rec.ID)
	if err != nil {
		return sandbox.Info{}, sandbox.Internal("sandbox %q: %w", rec.ID, err)
	}
	spec.Mounts = append(spec.Mounts, etc...)
	for _, m := range spec.Mounts {
		// The files written for the sandbox are its root's, as on a host.
		if m.Type == "bind" && filepath.Dir(m.Source) == b.dir {
			if err := chownToSandbox(rec.UIDBase, m.Source); err != nil {
				return sandbox.Info{}, sandbox.Internal("sandbox %q: %w", rec.ID, err)
			}
		}
	}
	netns, err := r.prepareNetwork(ctx, rec.ID, b.dir, rec.Network)
	if err != nil {
		return sandbox.Info{}, err
	}
	b.netns = netns // release's from here on, on failure too
	netns.apply(spec)
	r.useSeccompBPF(spec)
	astart, err := r.newAgentStart(spec)
	if err != nil {
		return sandbox.Info{}, err
	}
	defer astart.close()
	files := astart.extraFiles()
	wl, err := r.prepareWorkload(spec, rec.ID, 3+len(files))
	if err != nil {
		return sandbox.Info{}, sandbox.Internal("sandbox %q: %w", rec.ID, err)
	}
	if wl != nil {
		defer wl.Close()
		files = append(files, wl)
	}
	js, err := json.Marshal(spec)
	if err != nil {
		return sandbox.Info{}, sandbox.Internal("encode OCI spec: %w", err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "config.json"), js, 0o600); err != nil {
		return sandbox.Info{}, sandbox.Internal("write OCI spec: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return sandbox.Info{}, err
	}
	var pid int
	var mountErr, runErr error
	if err := inOwnMountNS(func() error {
		if mountErr = mountRoot(); mountErr != nil {
			return nil
		}
		if sysfs != "" {
			if mountErr = sysfsMount(netns.f, sysfs); mountErr != nil {
				return nil
			}
		}
		pid, runErr = r.oci.run(ctx, rec.ID, b.dir, filepath.Join(b.dir, "console.log"), files...)
		return nil
	}); err != nil {
		return sandbox.Info{}, sandbox.Internal("sandbox %q: %w", rec.ID, err)
	}
	if mountErr != nil {
		return sandbox.Info{}, sandbox.Internal("sandbox %q root filesystem: %w", rec.ID, mountErr)
	}
	if runErr != nil {
		return sandbox.Info{}, sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonRuntimeError, "start the container of sandbox %q: %w", rec.ID, runErr)
	}
	r.reaper.watch(pid)
	r.learnSeccompBPF(rec.ID)
	_, start, err := pidStart(pid)
	if err != nil {
		// The container started, so its PID 1, the agent, is what exited.
		return sandbox.Info{}, sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonAgentUnavailable,
			"the agent of sandbox %q exited right after it started: %s", rec.ID, tail(filepath.Join(b.dir, "console.log"), 2048))
	}
	rec.PID, rec.PIDStart = pid, start
	if r.oci.name == "runsc" {
		gofer, err := r.oci.goferPID(rec.ID)
		if err != nil {
			return sandbox.Info{}, sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonRuntimeError, "sandbox %q: %w", rec.ID, err)
		}
		r.reaper.watch(gofer)
		if _, gstart, err := pidStart(gofer); err == nil {
			rec.ListenerPID, rec.ListenerStart = gofer, gstart
		} else if _, _, err := pidStart(pid); err != nil {
			// The sandbox ended with its gofer: its PID 1, the agent, died
			// at start.
			return sandbox.Info{}, sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonAgentUnavailable,
				"the agent of sandbox %q exited right after it started: %s", rec.ID, tail(filepath.Join(b.dir, "console.log"), 2048))
		} else {
			return sandbox.Info{}, sandbox.Errorf(sandbox.ErrUnavailable, sandbox.ReasonRuntimeError, "the gVisor gofer of sandbox %q exited right after it started: %s", rec.ID, tail(filepath.Join(b.dir, "console.log"), 2048))
		}
	}
	// Only in memory: a crash before the record below leaves one in phase
	// creating, whose container recovery finds through its pid file.
	b.setRecord(rec)
	if err := r.waitAgent(ctx, b, rec, r.cfg.StartTimeout, astart); err != nil {
		return sandbox.Info{}, err
	}
	rec.Phase = phaseCreated
	if err := writeRecord(b.dir, &rec); err != nil {
		return sandbox.Info{}, sandbox.Internal("write sandbox record: %w", err)
	}
	b.setRecord(rec)
	return r.info(rec, b), nil
}

// teardown removes everything of a sandbox but its dir's record and state
// (release) or everything (remove). It is idempotent and tolerates any
// half-made state.
func (r *Runtime) teardown(ctx context.Context, b *box) error {
	errs := []error{r.release(ctx, b)}
	rec, _ := b.snapshot()
	if isMountPoint(filepath.Join(b.dir, "rootfs")) {
		return errors.Join(errs...)
	}
	if _, err := os.Lstat(scratchDir(b.dir)); err == nil {
		// Idmapped layer mounts release could not remove: removing the
		// dir would recurse into the image's layers.
		return errors.Join(errs...)
	}
	// The image's layers are unused once the overlay is gone. Released
	// before the dir goes: a crash between the two then leaves the dir,
	// whose record the next start tears down again (Release is
	// idempotent), never a use of the image that nothing would release.
	if rec.Digest != "" {
		if err := r.cfg.Images.Release(rec.Digest, rec.ID); err != nil {
			errs = append(errs, err)
		}
	}
	// The data dir first: a crash between the two leaves the sandbox
	// dir, which the next start tears down again.
	if err := r.removeDataDir(b.dir); err != nil {
		errs = append(errs, err)
	} else if err := os.RemoveAll(b.dir); err != nil {
		errs = append(errs, err)
	} else if r.ids != nil && rec.UIDBase != 0 {
		// Only once nothing of the sandbox is left (its processes are
		// gone with its container) may another sandbox get its range.
		if err := r.ids.free(b.dir, rec.UIDBase); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// release kills the container and removes it, its cgroups, its overlay
// mount and its writable layer; the record and state dir stay.
func (r *Runtime) release(ctx context.Context, b *box) error {
	rec, _ := b.snapshot()
	recorded := rec.PID != 0
	if rec.PID == 0 {
		// Killed between the runtime's start and the record's update: the
		// pid file still names the container's PID 1.
		if pb, err := os.ReadFile(filepath.Join(b.dir, "init.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(pb))); err == nil && pid > 0 {
				if _, start, err := pidStart(pid); err == nil {
					rec.PID, rec.PIDStart = pid, start
				}
			}
		}
	}
	if sameProcess(rec.PID, rec.PIDStart) {
		// A PID 1 orphaned by a killed server may have become our child
		// (we are a subreaper): reap it once it dies.
		r.reaper.watch(rec.PID)
	}
	var errs []error
	if r.oci.name == "runsc" {
		for _, pid := range r.watchRunsc(rec.ID) {
			if pid != rec.PID {
				defer r.reaper.forget(pid)
			}
		}
		if sameProcess(rec.PID, rec.PIDStart) {
			defer reapStubs(runscStubs(rec.PID))
		}
	}
	err := r.deleteContainer(ctx, rec, recorded)
	if r.oci.name == "runsc" && (r.killBundleProcesses(b.dir) || err != nil) {
		// Leftovers of a killed Create, which runsc's delete did not know
		// of or could not stop: now gone, so its delete can finish. A
		// delete that gave up waiting for the Sentry to stop (it does,
		// under load, after our reaper collected it) is tried once more
		// too.
		err = r.oci.delete(ctx, rec.ID)
	}
	if err != nil {
		errs = append(errs, err)
	}
	if rec.PID > 0 {
		// delete --force killed it; make sure it is gone before unmounting.
		waitExited(ctx, rec.PID, rec.PIDStart, 10*time.Second)
	}
	if err := r.cg.removeCgroup(r.cfg.CgroupParent, rec.ID); err != nil {
		errs = append(errs, err)
	}
	// After the container: nothing of it is in its network namespace any
	// more, which is kept for another sandbox or goes (with its veth)
	// once we close it. Our connections to its dead agent hold the
	// agent's ends of them, sockets of that namespace, until closed.
	b.dropClient()
	if err := r.releaseNetns(ctx, rec.ID, b.netns); err != nil {
		errs = append(errs, err)
	}
	b.netns = nil
	rootfs := filepath.Join(b.dir, "rootfs")
	if err := unmount(rootfs); err != nil {
		errs = append(errs, err)
	}
	if isMountPoint(rootfs) {
		errs = append(errs, fmt.Errorf("%s is still mounted; not removing the sandbox's files", rootfs))
		return errors.Join(errs...)
	}
	if err := releaseScratch(b.dir); err != nil {
		errs = append(errs, err)
		return sandbox.Internal("release sandbox %q: %w", rec.ID, errors.Join(errs...))
	}
	if r.cfg.Disk != nil {
		if err := r.cfg.Disk.destroy(filepath.Base(b.dir)); err != nil {
			errs = append(errs, err)
		}
	}
	// Without a disk pool, the writable layer is in the data dir.
	for _, p := range []string{
		filepath.Join(r.dataOf(b.dir), "upper"), filepath.Join(r.dataOf(b.dir), "work"),
		filepath.Join(b.dir, "rootfs"), filepath.Join(b.dir, "empty"), filepath.Join(b.dir, "config.json"), filepath.Join(b.dir, "init.pid"),
		filepath.Join(b.dir, resolvConfFile), filepath.Join(b.dir, hostsFile), filepath.Join(b.dir, hostnameFile),
		filepath.Join(b.dir, sysfsDir),
	} {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return sandbox.Internal("release sandbox %q: %w", rec.ID, err)
	}
	return nil
}

// forget drops b from the map.
func (r *Runtime) forget(b *box) {
	b.dropClient()
	b.mu.Lock()
	b.deleted = true
	id := b.rec.ID
	b.mu.Unlock()
	r.mu.Lock()
	if r.boxes[id] == b {
		delete(r.boxes, id)
	}
	r.mu.Unlock()
}
