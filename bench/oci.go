package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/sbx-run/sbx/internal/runtime/local"
)

// FloorArg is the hidden first argument that makes the harness binary run
// the floor loop (RunFloorChild) in the private mount namespace its parent
// made for it.
const FloorArg = "__oci-floor"

// FloorConfig tells the floor child what to run.
type FloorConfig struct {
	Runtime string `json:"runtime"` // crun or runc
	Dir     string `json:"dir"`     // holds rootfs/, run/ and exec/ bundles
	Runs    int    `json:"runs"`
	Execs   int    `json:"execs"`
	// Parallel workers each run ParallelRuns lives (run to exit) at once
	// after the one-at-a-time runs: the most cold lives per second this
	// runtime gives on this machine. 0 skips it.
	Parallel     int `json:"parallel"`
	ParallelRuns int `json:"parallel_runs"`
}

// FloorResult is what the child measured, in ms.
type FloorResult struct {
	RunFirst []float64 `json:"run_first_ms"`
	RunExit  []float64 `json:"run_exit_ms"`
	Exec     []float64 `json:"exec_ms"`
	// CPUPerRun is the CPU (user + system, from RUSAGE_CHILDREN: the
	// runtime's processes and the container's) per one-at-a-time life, ms.
	CPUPerRun float64 `json:"cpu_per_run_ms"`
	// ParallelRate is lives per second with Parallel workers; ParallelCPU
	// their CPU per life, ms.
	ParallelRate float64        `json:"parallel_per_s"`
	ParallelCPU  float64        `json:"parallel_cpu_per_run_ms"`
	Errors       map[string]int `json:"errors"`
}

// PrepareBundles unpacks img into dir/rootfs and writes two OCI bundles on
// it: dir/run (`echo hi`) and dir/exec (`sleep`, to exec into), from the
// runtime's own default spec (`crun spec`), read-only root.
func PrepareBundles(ctx context.Context, dir, runtime string, img v1.Image) error {
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return err
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", rootfs, "-f", "-")
	untar.Stdin = rc
	if out, err := untar.CombinedOutput(); err != nil {
		return fmt.Errorf("unpack busybox rootfs: %v: %s", err, out)
	}
	tmp := filepath.Join(dir, "spec")
	os.MkdirAll(tmp, 0o755)
	spec := exec.CommandContext(ctx, runtime, "spec")
	spec.Dir = tmp
	if out, err := spec.CombinedOutput(); err != nil {
		return fmt.Errorf("%s spec: %v: %s", runtime, err, out)
	}
	raw, err := os.ReadFile(filepath.Join(tmp, "config.json"))
	if err != nil {
		return err
	}
	for name, args := range map[string][]string{"run": {"echo", "hi"}, "exec": {"sleep", "1000000"}} {
		var cfg map[string]any
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return err
		}
		proc := cfg["process"].(map[string]any)
		proc["terminal"] = false
		proc["args"] = args
		cfg["root"] = map[string]any{"path": rootfs, "readonly": true}
		b, _ := json.MarshalIndent(cfg, "", "  ")
		bdir := filepath.Join(dir, name)
		if err := os.MkdirAll(bdir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(bdir, "config.json"), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// RunFloor runs the floor loop in a child of this process (the harness
// binary re-executed with FloorArg) in a private mount namespace, where
// /sys/fs/cgroup/unified can be unmounted for crun without touching the
// host, and returns the child's measurements.
func RunFloor(ctx context.Context, cfg FloorConfig) (*FloorResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(cfg)
	cmd := exec.CommandContext(ctx, exe, FloorArg, string(b))
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("floor child: %v: %s", err, lastLine(stderr.String()))
	}
	var res FloorResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("floor child output: %w", err)
	}
	return &res, nil
}

// RunFloorChild is the floor loop: runs `RUNTIME run` of the echo bundle
// cfg.Runs times and `RUNTIME exec CTR true` cfg.Execs times, and writes
// a FloorResult as JSON to w.
func RunFloorChild(arg string, w io.Writer) error {
	var cfg FloorConfig
	if err := json.Unmarshal([]byte(arg), &cfg); err != nil {
		return err
	}
	if cfg.Runtime != "crun" && cfg.Runtime != "runc" {
		return fmt.Errorf("runtime %q: use crun or runc", cfg.Runtime)
	}
	// Our namespace is private (Go made it MS_PRIVATE): this unmount does
	// not reach the host. crun 1.8 refuses hybrid cgroups while it is there.
	if cfg.Runtime == "crun" {
		switch err := syscall.Unmount("/sys/fs/cgroup/unified", syscall.MNT_DETACH); {
		case err == nil:
			// crun still writes a cgroup.procs per container under
			// this path: into a tmpfs of ours, which goes with our
			// namespace, not into the host's (as sbx serve does; see
			// internal/runtime/local/cgroup2stub.go).
			if err := syscall.Mount("sbx-bench-cgroup2-stub", "/sys/fs/cgroup/unified", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "mode=755"); err != nil {
				return fmt.Errorf("mount a tmpfs on /sys/fs/cgroup/unified: %w", err)
			}
		case err != syscall.EINVAL && err != syscall.ENOENT:
			return fmt.Errorf("unmount /sys/fs/cgroup/unified: %w", err)
		}
	}
	// The same binary sbx serve runs (sbx's static crun when installed), so
	// that the floor is the runtime's own cost.
	bin, err := local.FindRuntime(cfg.Runtime)
	if err != nil {
		return fmt.Errorf("runtime %s: %w", cfg.Runtime, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res := FloorResult{Errors: map[string]int{}}
	prefix := "sbx-bench-floor-" + strconv.Itoa(os.Getpid())
	var cpu0 time.Duration
	for i := -1; i < cfg.Runs; i++ {
		if i == 0 {
			cpu0 = childrenCPU()
		}
		id := prefix + "-" + strconv.Itoa(i+1)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		cmd := exec.CommandContext(rctx, bin, "run", "-b", filepath.Join(cfg.Dir, "run"), id)
		f, e, err := firstByte(rctx, cmd)
		cancel()
		if err != nil {
			res.Errors[err.Error()]++
			exec.Command(bin, "delete", "-f", id).Run()
			continue
		}
		if i >= 0 {
			res.RunFirst = append(res.RunFirst, Ms(f))
			res.RunExit = append(res.RunExit, Ms(e))
		}
	}
	if n := len(res.RunExit); n > 0 {
		res.CPUPerRun = Ms(childrenCPU()-cpu0) / float64(n)
	}
	if cfg.Parallel > 0 && cfg.ParallelRuns > 0 {
		runParallel(ctx, cfg, bin, prefix, &res)
	}
	id := prefix + "-idle"
	// The detached container inherits crun's stdio: give it no pipe that
	// would keep Output waiting for its end.
	detached := exec.Command(bin, "run", "-d", "-b", filepath.Join(cfg.Dir, "exec"), id)
	if err := detached.Run(); err != nil {
		res.Errors[fmt.Sprintf("%s run -d: %v", cfg.Runtime, err)]++
	} else {
		for i := -1; i < cfg.Execs; i++ {
			t0 := time.Now()
			if out, err := exec.CommandContext(ctx, bin, "exec", id, "true").CombinedOutput(); err != nil {
				res.Errors[fmt.Sprintf("%s exec: %v: %s", cfg.Runtime, err, lastLine(string(out)))]++
				continue
			}
			if i >= 0 {
				res.Exec = append(res.Exec, Ms(time.Since(t0)))
			}
		}
		exec.Command(bin, "kill", id, "KILL").Run()
		time.Sleep(100 * time.Millisecond)
		exec.Command(bin, "delete", "-f", id).Run()
	}
	return json.NewEncoder(w).Encode(res)
}

// runParallel runs cfg.Parallel workers, each running the echo bundle to
// exit cfg.ParallelRuns times, and records lives per second and CPU per
// life. Failed lives count as errors, not as lives.
func runParallel(ctx context.Context, cfg FloorConfig, bin, prefix string, res *FloorResult) {
	var mu sync.Mutex
	lives := 0
	cpu0, t0 := childrenCPU(), time.Now()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < cfg.ParallelRuns; i++ {
				id := fmt.Sprintf("%s-p%d-%d", prefix, w, i)
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				out, err := exec.CommandContext(rctx, bin, "run", "-b", filepath.Join(cfg.Dir, "run"), id).CombinedOutput()
				cancel()
				mu.Lock()
				if err != nil {
					res.Errors[fmt.Sprintf("parallel %s run: %v: %s", cfg.Runtime, err, lastLine(string(out)))]++
					exec.Command(bin, "delete", "-f", id).Run()
				} else {
					lives++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	wall, cpu := time.Since(t0), childrenCPU()-cpu0
	if lives > 0 {
		res.ParallelRate = float64(lives) / wall.Seconds()
		res.ParallelCPU = Ms(cpu) / float64(lives)
	}
}

// childrenCPU is the user + system CPU of every child this process has
// waited for, and of their waited-for descendants.
func childrenCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
