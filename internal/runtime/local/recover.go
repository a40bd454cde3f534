package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// recover rebuilds the sandbox map from Root after a restart: running
// sandboxes whose agent answers are re-attached; dead or unresponsive ones
// are released (their exit status and log stay until Delete); half-made
// ones, and containers without a sandbox dir, are removed.
func (r *Runtime) recover(ctx context.Context) error {
	sbRoot := r.sbRoot()
	entries, err := os.ReadDir(sbRoot)
	if err != nil {
		return sandbox.Internal("read %s: %w", sbRoot, err)
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 8)
	)
	for _, e := range entries {
		dir := filepath.Join(sbRoot, e.Name())
		if !e.IsDir() {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := r.recoverOne(ctx, dir); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	// Containers the OCI runtime knows but no sandbox dir claims: a crash
	// between their dir's removal and their own.
	ids, err := r.oci.list(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, id := range ids {
		r.mu.Lock()
		known := r.boxes[id] != nil
		r.mu.Unlock()
		if !known {
			if err := r.oci.delete(ctx, id); err != nil {
				errs = append(errs, err)
			}
			if err := r.cg.removeCgroup(r.cfg.CgroupParent, id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := r.recoverNetworks(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := r.recoverDisk(); err != nil {
		errs = append(errs, err)
	}
	if err := r.recoverDataDirs(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return sandbox.Internal("recover sandboxes under %s: %w", r.cfg.Root, err)
	}
	return nil
}

func (r *Runtime) recoverOne(ctx context.Context, dir string) error {
	rec, err := readRecord(dir)
	if err != nil {
		// No readable record: Create died right after making the dir,
		// before anything else existed.
		if err := unmount(filepath.Join(dir, "rootfs")); err != nil {
			return err
		}
		if err := releaseScratch(dir); err != nil {
			return err
		}
		if isMountPoint(filepath.Join(dir, "rootfs")) {
			return errors.New(dir + "/rootfs is still mounted")
		}
		if err := r.removeDataDir(dir); err != nil {
			return err
		}
		return os.RemoveAll(dir)
	}
	if r.dirOf(rec.ID) != dir {
		return errors.New(dir + ": record names sandbox " + rec.ID + " whose dir is elsewhere; remove it by hand")
	}
	b := &box{dir: dir, state: r.stateOf(dir), rec: *rec}
	switch rec.Phase {
	case phaseCreating:
		return r.teardown(ctx, b)
	case phaseCreated:
		if sameProcess(rec.PID, rec.PIDStart) {
			r.reaper.watch(rec.PID)
		}
		if rec.ListenerPID != 0 && sameProcess(rec.ListenerPID, rec.ListenerStart) {
			r.reaper.watch(rec.ListenerPID)
		}
		if alive(rec.PID, rec.PIDStart) && r.agentAnswers(ctx, dir, *rec) {
			break
		}
		if err := r.release(ctx, b); err != nil {
			return err
		}
		rec.Phase = phaseReleased
		if err := writeRecord(dir, rec); err != nil {
			return err
		}
		b.rec = *rec
	case phaseReleased:
	default:
		return r.teardown(ctx, b)
	}
	if rec.UIDBase != 0 && r.ids != nil {
		// Its range stays its own until Delete, files and all.
		if err := r.ids.claim(dir, rec.UIDBase); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.boxes[rec.ID] = b
	r.mu.Unlock()
	return nil
}

func (r *Runtime) agentAnswers(ctx context.Context, dir string, rec record) bool {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.AttachTimeout)
	defer cancel()
	c := dialAgent(r.stateOf(dir), rec)
	defer c.Close()
	return c.WaitReady(ctx) == nil
}
