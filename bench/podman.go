package bench

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// PodmanImage is the name the busybox test image is loaded under; it never
// resolves to a registry (--pull never).
const PodmanImage = "localhost/sbx-bench/busybox:latest"

// Podman runs the `podman run` baseline with an isolated storage root and
// config under Dir: runc (crun refuses this host's hybrid cgroups),
// cgroupfs, file events, ulimits within the hard limits, no network.
type Podman struct {
	Dir string
	env []string
}

// NewPodman writes containers.conf and storage.conf under dir and loads
// img from an OCI archive written there.
func NewPodman(ctx context.Context, dir string, img v1.Image) (*Podman, error) {
	if _, err := exec.LookPath("podman"); err != nil {
		return nil, fmt.Errorf("podman is not installed (apt-get install podman): %w", err)
	}
	p := &Podman{Dir: dir}
	conf := `[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
`
	storage := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "run"))
	if err := os.WriteFile(filepath.Join(dir, "containers.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "storage.conf"), []byte(storage), 0o644); err != nil {
		return nil, err
	}
	p.env = append(os.Environ(),
		"CONTAINERS_CONF="+filepath.Join(dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF="+filepath.Join(dir, "storage.conf"))
	archive := filepath.Join(dir, "busybox.oci.tar")
	if err := WriteOCIArchive(archive, PodmanImage, img); err != nil {
		return nil, err
	}
	if out, err := p.cmd(ctx, "load", "-i", archive).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("podman load: %v\n%s", err, out)
	}
	return p, nil
}

// Close removes the containers and images and unmounts what podman left
// mounted under Dir (its overlay driver bind-mounts its own directory), so
// that Dir can be removed.
func (p *Podman) Close() {
	ctx := context.Background()
	p.cmd(ctx, "rm", "-a", "-f").Run()
	p.cmd(ctx, "rmi", "-a", "-f").Run()
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var mounts []string
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], p.Dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- { // the deepest were mounted last
		syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

// Version is `podman --version`.
func (p *Podman) Version() string {
	out, _ := p.cmd(context.Background(), "--version").Output()
	return strings.TrimSpace(string(out))
}

func (p *Podman) cmd(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, "podman", args...)
	c.Env = p.env
	return c
}

// Run measures n `podman run --rm --network none IMAGE echo hi`, to the
// first output byte (the sample) and to exit.
func (p *Podman) Run(ctx context.Context, n int) []*Scenario {
	first := &Scenario{Name: "cold_create", System: "podman", Errors: map[string]int{},
		Note: "podman run --rm --network none --runtime runc busybox echo hi → first output byte"}
	exit := &Scenario{Name: "run_exit", System: "podman", Note: "same, until podman exits (container removed)"}
	for i := -1; i < n; i++ { // one warm-up
		f, e, err := firstByte(ctx, p.cmd(ctx, "run", "--rm", "--pull", "never", "--network", "none", PodmanImage, "echo", "hi"))
		if err != nil {
			first.Errors[err.Error()]++
			continue
		}
		if i >= 0 {
			first.Samples = append(first.Samples, Ms(f))
			exit.Samples = append(exit.Samples, Ms(e))
		}
	}
	return []*Scenario{Finish(first), Finish(exit)}
}

// Exec measures n `podman exec CTR true` in one running container.
func (p *Podman) Exec(ctx context.Context, n int) *Scenario {
	s := &Scenario{Name: "exec_true", System: "podman", Errors: map[string]int{}, Note: "podman exec CTR true"}
	name := "sbx-bench-idle"
	p.cmd(ctx, "rm", "-f", name).Run()
	if out, err := p.cmd(ctx, "run", "-d", "--pull", "never", "--network", "none", "--name", name, PodmanImage, "sleep", "1000000").CombinedOutput(); err != nil {
		s.Errors[fmt.Sprintf("podman run -d: %v: %s", err, bytes.TrimSpace(out))]++
		return s
	}
	defer p.cmd(context.WithoutCancel(ctx), "rm", "-f", "-t", "0", name).Run()
	for i := -1; i < n; i++ {
		t0 := time.Now()
		if err := p.cmd(ctx, "exec", name, "true").Run(); err != nil {
			s.Errors[err.Error()]++
			continue
		}
		if i >= 0 {
			s.Samples = append(s.Samples, Ms(time.Since(t0)))
		}
	}
	return Finish(s)
}

// firstByte runs cmd and returns the time to the first byte on its stdout
// and the time to its exit.
func firstByte(ctx context.Context, cmd *exec.Cmd) (first, exit time.Duration, err error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	br := bufio.NewReader(out)
	_, rerr := br.ReadByte()
	first = time.Since(t0)
	io.Copy(io.Discard, br)
	werr := cmd.Wait()
	exit = time.Since(t0)
	if werr != nil {
		return 0, 0, fmt.Errorf("%s: %v: %s", cmd.Args[0], werr, lastLine(stderr.String()))
	}
	if rerr != nil {
		return 0, 0, fmt.Errorf("%s printed nothing: %s", cmd.Args[0], lastLine(stderr.String()))
	}
	return first, exit, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// WriteOCIArchive writes img as an OCI archive (a tar of an OCI image
// layout) at path, with refName as its org.opencontainers.image.ref.name.
func WriteOCIArchive(path, refName string, img v1.Image) error {
	dir, err := os.MkdirTemp(filepath.Dir(path), "layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": refName})); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name, _ = filepath.Rel(dir, p)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
