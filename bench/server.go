package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/runtime/local"
	"github.com/sbx-run/sbx/internal/testenv"
)

// Server is an `sbx serve` the harness started: fresh data dir, a free
// loopback port, docker.io mirrored to a registry on 127.0.0.1 holding the
// Debian-built busybox image (the same setup as test/e2e).
type Server struct {
	URL, Key string
	// Socket is the API's Unix socket (<data dir>/api.sock).
	Socket  string
	Bin     string // the sbx binary, to find the serving process
	Dir     string
	cmd     *exec.Cmd
	done    chan struct{}
	stopReg func()
	// args start the server; poolArgs add the warm pool to them.
	args, poolArgs []string
	stopped        bool
}

// BuildBinaries builds sbx and the static sbx-agent from this module into
// dir and returns their paths.
func BuildBinaries(dir string) (sbxBin, agentBin string, err error) {
	for _, b := range []struct{ pkg, out string }{{"./cmd/sbx", "sbx"}, {"./cmd/sbx-agent", "sbx-agent"}} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Dir = testenv.ModuleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return filepath.Join(dir, "sbx"), filepath.Join(dir, "sbx-agent"), nil
}

// StartServer starts the registry and `sbx serve` under dir (which must be
// short: agent socket paths live under it) and waits until it answers.
//
// warmImage, when not empty, is pushed as another tag of the same image
// and given a warm pool of 2 idle sandboxes (at most 3), so that the warm
// scenario hits the pool while every other scenario (plain "busybox")
// misses it and starts cold.
func StartServer(ctx context.Context, dir, sbxBin, agentBin, runtime string, quota int, warmImage string, extra ...string) (*Server, error) {
	return startServer(ctx, dir, sbxBin, agentBin, runtime, quota, warmImage, "2:3", extra)
}

// StartPoolServer is StartServer with a warm pool of size idle sandboxes
// (at most size) of image (busybox:TAG), for the pool_rate scenario.
func StartPoolServer(ctx context.Context, dir, sbxBin, agentBin, runtime string, quota int, image string, size int, extra ...string) (*Server, error) {
	return startServer(ctx, dir, sbxBin, agentBin, runtime, quota, image, fmt.Sprintf("%d:%d", size, size), extra)
}

// startServer starts a server with a pool of poolImage sized poolSize
// (MIN:MAX), if poolImage is set; extra are more `sbx serve` flags.
func startServer(ctx context.Context, dir, sbxBin, agentBin, runtime string, quota int, warmImage, poolSize string, extra []string) (*Server, error) {
	img, err := testenv.NewBusyboxImage()
	if err != nil {
		return nil, err
	}
	host, stopReg, err := testenv.ServeRegistry("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if _, err := testenv.Push(ctx, host, "library/busybox:latest", img); err != nil {
		stopReg()
		return nil, err
	}
	var poolArgs []string
	if warmImage != "" {
		_, tag, ok := strings.Cut(warmImage, ":")
		if !ok || strings.ContainsAny(tag, "/@") {
			stopReg()
			return nil, fmt.Errorf("warm image %q must be busybox:TAG", warmImage)
		}
		if _, err := testenv.Push(ctx, host, "library/busybox:"+tag, img); err != nil {
			stopReg()
			return nil, err
		}
		poolArgs = []string{"--pool", warmImage + "=" + poolSize}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stopReg()
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		stopReg()
		return nil, err
	}
	// Its own bridge, nftables table and subnet: a server already running
	// on this host (sbx0, table sbx) must not make the harness fail, nor
	// the harness touch that server's network. Stop removes them.
	netw, err := testenv.PickNetwork()
	if err != nil {
		stopReg()
		return nil, err
	}
	stopAll := func() { stopReg(); _ = netw.Remove() }
	cfgDir := filepath.Join(dir, "cfg")
	s := &Server{URL: "http://" + addr, Socket: filepath.Join(dir, "data", "api.sock"), Bin: sbxBin, Dir: dir, stopReg: stopAll, poolArgs: poolArgs}
	s.args = []string{"serve",
		"--listen", addr,
		"--data-dir", filepath.Join(dir, "data"),
		"--agent-path", agentBin,
		"--runtime", runtime,
		"--registry-mirror", "docker.io=http://" + host,
		"--max-sandboxes-per-tenant", strconv.Itoa(quota),
		"--log-level", "warn"}
	s.args = append(s.args, netw.Args()...)
	s.args = append(s.args, extra...)
	if err := s.start(append(s.args, poolArgs...)); err != nil {
		stopAll()
		return nil, err
	}
	creds, err := sbx.ReadCredentials(filepath.Join(cfgDir, "credentials"))
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("sbx serve wrote no credentials: %w", err)
	}
	s.Key = creds.APIKey
	return s, nil
}

// ClientURL is the server's URL for the SDK over transport: unix:// of
// its socket for "unix", else its loopback http:// URL.
func (s *Server) ClientURL(transport string) string {
	if transport == "unix" {
		return "unix://" + s.Socket
	}
	return s.URL
}

// ServingPIDs are the pids of the sbx processes: the started one and the
// child it re-executes itself as in a private mount namespace, if any.
func (s *Server) ServingPIDs() []int {
	pid := s.cmd.Process.Pid
	pids := []int{pid}
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, c := range strings.Fields(string(b)) {
			n, _ := strconv.Atoi(c)
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", n)); err == nil && exe == s.Bin {
				pids = append(pids, n)
			}
		}
	}
	return pids
}

// RSS is the resident memory of the server's processes.
func (s *Server) RSS() int64 {
	var t int64
	for _, p := range s.ServingPIDs() {
		t += RSSOfPID(p)
	}
	return t
}

// start runs `sbx serve args` and waits until it answers /healthz.
func (s *Server) start(args []string) error {
	logf, err := os.OpenFile(filepath.Join(s.Dir, "serve.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	s.cmd = exec.Command(s.Bin, args...)
	s.cmd.Env = append(os.Environ(), sbx.EnvConfigDir+"="+filepath.Join(s.Dir, "cfg"), "SBX_URL=", "SBX_API_KEY=")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	s.done = done
	go func(cmd *exec.Cmd) { cmd.Wait(); close(done) }(s.cmd)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("sbx serve exited at start; see %s", filepath.Join(s.Dir, "serve.log"))
		default:
		}
		if r, err := http.Get(s.URL + "/healthz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				s.warnUserns()
				return nil
			}
		}
		if time.Now().After(deadline) {
			s.terminate()
			return fmt.Errorf("sbx serve did not answer /healthz within 60s; see %s", filepath.Join(s.Dir, "serve.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// terminate ends the server process gracefully (SIGTERM, SIGKILL after
// 30 s).
func (s *Server) terminate() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// Stop ends the server and stops the registry. Deleted sandboxes are torn
// down in the background, and idle warm-pool sandboxes outlive a server on
// purpose (a restart re-finds them) and belong to no tenant, so deleting
// every sandbox through the API does not reach them: a server with a pool
// is restarted once without it, which removes them. Either way the server
// is stopped only when no sandbox dir is left (at most 3 minutes): the work
// dir is removed after Stop, so a sandbox left now would outlive the
// benchmark.
func (s *Server) Stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	running := true
	if len(s.poolArgs) > 0 {
		s.terminate()
		running = s.start(s.args) == nil
	}
	if running {
		sbDir := filepath.Join(local.RunRootOf(filepath.Join(s.Dir, "data")), "sb")
		left := 0
		for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			entries, _ := os.ReadDir(sbDir)
			if left = len(entries); left == 0 {
				break
			}
		}
		if left > 0 {
			fmt.Fprintf(os.Stderr, "sbx-bench: %d sandboxes of the server in %s were not deleted within 3 minutes\n", left, s.Dir)
		}
		s.terminate()
	}
	s.stopReg()
}

// warnUserns says so when the server runs its sandboxes without user
// namespaces (a default install has them where the kernel can), since
// the figures then measure another setup.
func (s *Server) warnUserns() {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "serve.log"))
	if i := bytes.Index(b, []byte("without user namespaces")); i >= 0 {
		line := b[max(0, bytes.LastIndexByte(b[:i], '\n')+1):]
		if j := bytes.IndexByte(line, '\n'); j >= 0 {
			line = line[:j]
		}
		fmt.Fprintf(os.Stderr, "sbx-bench: warning: the server runs sandboxes without user namespaces: %s\n", line)
	}
}
