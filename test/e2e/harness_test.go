package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/runtime/local"
	"github.com/sbx-run/sbx/internal/store/sqlite"
	"github.com/sbx-run/sbx/internal/testenv"
)

// server is one `sbx serve` process under test.
type server struct {
	t       testing.TB
	bin     string
	agent   string
	dataDir string
	cfgDir  string
	addr    string
	args    []string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	key     string
	// netns, when set, is the network namespace (a path) the server runs
	// in; hc then connects from inside it.
	netns string
	hc    *http.Client
	// caFile, when set, is the CA of the server's TLS certificate: the
	// server speaks https and clients trust that CA.
	caFile string
}

// serverOptions change how startServerWith starts a server.
type serverOptions struct {
	// netns runs the server inside this network namespace (a path such as
	// /run/netns/NAME); the harness reaches it from there.
	netns string
	// registry is the registry host the server mirrors docker.io to
	// (default: the shared test registry).
	registry string
	// listen is the API address (default: a free port on 127.0.0.1).
	listen string
	// dataTmpfs, when set, makes the data dir a tmpfs of this size (such
	// as "1400m"), so a test can fill the data dir's filesystem.
	dataTmpfs string
	// tls, when set, serves the API over TLS with this certificate.
	tls *testCert
}

// startServer starts `sbx serve` on a fresh data dir and a free port, with
// docker.io mirrored to the test registry, and waits until it answers. The
// server is stopped (and its sandboxes deleted) when the test ends.
func startServer(t testing.TB, extraArgs ...string) *server {
	t.Helper()
	return startServerWith(t, serverOptions{}, extraArgs...)
}

// startServerWith is startServer with options.
func startServerWith(t testing.TB, opts serverOptions, extraArgs ...string) *server {
	t.Helper()
	testenv.Require(t, true, "crun")
	reg := opts.registry
	if reg == "" {
		reg = testRegistry(t)
	}
	s := &server{
		t:     t,
		bin:   testenv.Binary(t, "./cmd/sbx"),
		agent: testenv.AgentBinary(t),
		netns: opts.netns,
		hc:    http.DefaultClient,
	}
	if s.netns != "" {
		testenv.Require(t, true, "nsenter")
		s.hc = testenv.HTTPClientIn(s.netns)
	}
	if opts.tls != nil {
		s.caFile = opts.tls.caFile
		s.hc = opts.tls.httpClient()
		extraArgs = append(extraArgs, "--tls-cert", opts.tls.certFile, "--tls-key", opts.tls.keyFile)
	}
	dir, err := os.MkdirTemp("", "sbx-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	// Searchable, as /var/lib is: under user namespaces a sandbox's root
	// (an unprivileged host uid) must reach its rootfs in the data dir.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	s.dataDir = filepath.Join(dir, "data")
	s.cfgDir = filepath.Join(dir, "cfg")
	s.logPath = filepath.Join(dir, "serve.log")
	if opts.dataTmpfs != "" {
		if err := os.MkdirAll(s.dataDir, 0o711); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("tmpfs", s.dataDir, "tmpfs", 0, "size="+opts.dataTmpfs); err != nil {
			t.Fatal(err)
		}
	}
	s.addr = opts.listen
	if s.addr == "" {
		s.addr = freeAddr(t)
	}
	s.args = append([]string{"serve",
		"--listen", s.addr,
		"--data-dir", s.dataDir,
		"--agent-path", s.agent,
		"--registry-mirror", "docker.io=http://" + reg,
		// Nothing but the loopback registry: a missing image never makes
		// the server try Docker Hub (no test touches the internet).
		"--allowed-registry", reg,
		"--log-level", "debug",
	}, networkArgs(t, extraArgs)...)
	s.args = append(s.args, extraArgs...)
	s.start()
	creds, err := sbx.ReadCredentials(filepath.Join(s.cfgDir, "credentials"))
	if err != nil {
		t.Fatalf("sbx serve wrote no credentials: %v\n%s", err, s.log())
	}
	s.key = creds.APIKey
	t.Cleanup(func() {
		running := s.running()
		s.cleanup()
		// A server that exits detaches its disk pool, whose loop device
		// goes with its last sandbox; one killed leaves it mounted.
		_ = syscall.Unmount(filepath.Join(s.dataDir, "disk"), syscall.MNT_DETACH)
		if running {
			s.checkPoolDetached()
		}
		if opts.dataTmpfs != "" {
			_ = syscall.Unmount(s.dataDir, syscall.MNT_DETACH)
		}
		if t.Failed() {
			t.Logf("server log (%s):\n%s", s.logPath, tail(s.log(), 8000))
			return
		}
		os.RemoveAll(dir)
	})
	return s
}

// networkArgs gives the server its own bridge, nftables table and subnet
// (every server on the host would otherwise share sbx0 and the table sbx,
// and the second would refuse to start), unless the test chose a network.
func networkArgs(t testing.TB, extraArgs []string) []string {
	for _, a := range extraArgs {
		if a == "--network" || strings.HasPrefix(a, "--network=") {
			return nil
		}
	}
	return testenv.NetworkArgs(t)
}

// start runs the server process and waits for /healthz.
func (s *server) start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	s.cmd = exec.Command(s.bin, s.args...)
	if s.netns != "" {
		// nsenter enters the namespace and execs sbx: same pid.
		s.cmd = exec.Command("nsenter", append([]string{"--net=" + s.netns, s.bin}, s.args...)...)
	}
	s.cmd.Env = append(os.Environ(), sbx.EnvConfigDir+"="+s.cfgDir, "SBX_URL=", "SBX_API_KEY=")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(s.cmd, s.done)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			s.t.Fatalf("sbx serve exited at start:\n%s", s.log())
		default:
		}
		if r, err := s.hc.Get(s.url() + "/healthz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("sbx serve did not answer /healthz within 60s:\n%s", s.log())
}

func (s *server) url() string {
	if s.caFile != "" {
		return "https://" + s.addr
	}
	return "http://" + s.addr
}

func (s *server) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// client returns an SDK client with the local tenant's key (or key).
func (s *server) client(key ...string) *sbx.Client {
	s.t.Helper()
	k := s.key
	if len(key) > 0 {
		k = key[0]
	}
	opts := []sbx.ClientOption{sbx.WithURL(s.url()), sbx.WithAPIKey(k)}
	if s.netns != "" {
		opts = append(opts, sbx.WithHTTPClient(s.hc))
	}
	if s.caFile != "" {
		opts = append(opts, sbx.WithCAFile(s.caFile))
	}
	c, err := sbx.NewClient(opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// newTenant creates another tenant with a key, through the store file
// (there is no admin API yet), and returns the key.
func (s *server) newTenant(name string) string {
	s.t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(s.dataDir, "sbx.db"))
	if err != nil {
		s.t.Fatal(err)
	}
	defer st.Close()
	_, key, err := auth.NewTenant(ctx, st, name)
	if err != nil {
		s.t.Fatal(err)
	}
	return key
}

// servingPID is the pid of the process that serves: the child that
// `sbx serve` re-executes itself as in a private mount namespace (crun on a
// hybrid cgroup host), else the started process itself.
func (s *server) servingPID() int {
	pid := s.cmd.Process.Pid
	// Children are listed per thread of the parent, whichever forked them.
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var b []byte
	for _, f := range files {
		c, _ := os.ReadFile(f)
		b = append(append(b, c...), ' ')
	}
	for _, f := range strings.Fields(string(b)) {
		c, _ := strconv.Atoi(f)
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", c)); err == nil && exe == s.bin {
			return c
		}
	}
	return pid
}

// kill9 kills the server with SIGKILL, as a crash would, and waits for it:
// for the serving process too (a re-executed child on a hybrid-cgroup
// host), as a supervisor would, since its descriptors, the API's port
// among them, are open until all of its threads have exited.
func (s *server) kill9() {
	s.t.Helper()
	child := s.servingPID()
	syscall.Kill(child, syscall.SIGKILL)
	syscall.Kill(s.cmd.Process.Pid, syscall.SIGKILL)
	s.wait()
	if child != s.cmd.Process.Pid {
		waitExited(s.t, child)
	}
}

// waitExited waits until process pid has exited: gone, or a zombie with no
// thread left but its leader.
func waitExited(t testing.TB, pid int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		// "pid (comm) S ...": the state follows the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i > 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X') {
			if tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err != nil || len(tasks) <= 1 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d of the killed server did not exit within 30s", pid)
		}
	}
}

// terminate sends SIGTERM and waits for a graceful exit.
func (s *server) terminate() {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.wait()
}

func (s *server) wait() {
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		s.t.Errorf("sbx serve did not exit within 30s")
		<-s.done
	}
}

// cleanup deletes every sandbox through the API, checks nothing is left of
// them on the host, and stops the server.
func (s *server) cleanup() {
	select {
	case <-s.done:
		return // already stopped by the test
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	deleteAll(s.t, ctx, s.client())
	s.checkNoLeaks()
	s.terminate()
	// The network namespaces kept for reuse go when the server stops.
	if ids := s.networkRecords(); len(ids) > 0 {
		s.t.Errorf("networks left after the server stopped: %v", ids)
	}
}

// networkRecords returns the sandbox ids in the network's state files,
// those of namespaces kept for reuse (local.KeptNetnsPrefix) included.
func (s *server) networkRecords() []string {
	files, _ := filepath.Glob(filepath.Join(local.RunRootOf(s.dataDir), local.RunRootNetwork, "*.json"))
	var ids []string
	for _, f := range files {
		var a struct {
			SandboxID string `json:"sandbox_id"`
		}
		if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &a) == nil {
			ids = append(ids, a.SandboxID)
		}
	}
	return ids
}

// deleteAll deletes every sandbox the client's tenant has.
func deleteAll(t testing.TB, ctx context.Context, c *sbx.Client) {
	list, err := c.List(ctx, sbx.ListOptions{All: true})
	if err != nil {
		t.Errorf("list for cleanup: %v", err)
		return
	}
	for _, sb := range list {
		if err := sb.Delete(ctx); err != nil {
			t.Errorf("delete %s: %v", sb.ID(), err)
		}
	}
}

// checkNoLeaks checks that no sandbox dir, overlay mount, cgroup or
// container process is left on the host.
func (s *server) checkNoLeaks() {
	s.t.Helper()
	var leaks []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		leaks = s.leaks()
		if len(leaks) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(leaks) > 0 {
		s.t.Errorf("left behind after every sandbox was deleted:\n%s", strings.Join(leaks, "\n"))
	}
}

func (s *server) leaks() []string {
	var out []string
	runRoot := local.RunRootOf(s.dataDir)
	sbDir := filepath.Join(runRoot, "sb")
	if entries, _ := os.ReadDir(sbDir); len(entries) > 0 {
		out = append(out, fmt.Sprintf("%d sandbox dirs under %s", len(entries), sbDir))
	}
	dataDir := filepath.Join(s.dataDir, "sandboxes", "data")
	if entries, _ := os.ReadDir(dataDir); len(entries) > 0 {
		out = append(out, fmt.Sprintf("%d sandbox data dirs under %s", len(entries), dataDir))
	}
	// Each sandbox's writable layer is a btrfs subvolume in the disk pool.
	poolDir := filepath.Join(s.dataDir, "disk")
	if entries, _ := os.ReadDir(poolDir); len(entries) > 0 {
		out = append(out, fmt.Sprintf("%d subvolumes under %s", len(entries), poolDir))
	}
	// Mounts live in the server's private mount namespace: read its view.
	mi, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", s.servingPID()))
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (strings.HasPrefix(f[4], s.dataDir+"/") || strings.HasPrefix(f[4], runRoot+"/")) && f[4] != poolDir {
			out = append(out, "mount "+f[4])
		}
	}
	for _, id := range s.networkRecords() {
		if !strings.HasPrefix(id, local.KeptNetnsPrefix) {
			out = append(out, "network of sandbox "+id)
		}
	}
	// Every sandbox's cgroup is sbx/<id> in each hierarchy; a cgroup with
	// processes cannot be removed, so this also catches stray processes.
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/sbx/sb-*")
	v2, _ := filepath.Glob("/sys/fs/cgroup/sbx/sb-*")
	for _, d := range append(dirs, v2...) {
		if s.ownsCgroup(d) {
			out = append(out, "cgroup "+d)
		}
	}
	// On a hybrid host crun also writes a cgroup.procs per sandbox where
	// the cgroup2 mount was in the server's namespace (a tmpfs of the
	// server's own: local/cgroup2stub.go), which must go with it.
	stub, _ := filepath.Glob(fmt.Sprintf("/proc/%d/root/sys/fs/cgroup/unified/sbx/sb-*", s.servingPID()))
	for _, d := range stub {
		if s.knows(filepath.Base(d)) {
			out = append(out, "crun's cgroup2 dir "+d)
		}
	}
	return out
}

// ownsCgroup reports whether a sandbox cgroup belongs to this server (tests
// of other packages may run sandboxes at the same time).
func (s *server) ownsCgroup(dir string) bool {
	id := filepath.Base(dir)
	_, err := os.Stat(filepath.Join(local.RunRootOf(s.dataDir), "sb"))
	if err != nil {
		return false
	}
	return s.knows(id)
}

// knows reports whether the id appears in this server's log, i.e. it was
// one of its sandboxes.
func (s *server) knows(id string) bool { return strings.Contains(s.log(), `"`+id+`"`) }

// cli runs the sbx CLI against the server and returns stdout, stderr and
// the exit code.
func (s *server) cli(stdin string, args ...string) (string, string, int) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, args...)
	if s.netns != "" {
		cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + s.netns, s.bin}, args...)...)
	}
	cmd.Env = append(os.Environ(), "SBX_URL="+s.url(), "SBX_API_KEY="+s.key, sbx.EnvConfigDir+"="+s.cfgDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("sbx %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// ctxT returns a context bounded for one test step.
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// running reports whether the server process still runs.
func (s *server) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// checkPoolDetached checks that the disk pool image is on no loop device
// once the server exited with every sandbox deleted.
func (s *server) checkPoolDetached() {
	s.t.Helper()
	img := filepath.Join(s.dataDir, "disk.img")
	attached := func() bool {
		files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == img {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(10 * time.Second); attached(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			s.t.Errorf("the disk pool image %s is still on a loop device after the server exited with no sandbox left; processes whose mount namespace has it mounted: %s", img, poolHolders(filepath.Join(s.dataDir, "disk")))
			return
		}
	}
}

// poolHolders lists the processes (pid and command line) whose mount
// namespace has a mount on dir: what keeps a disk pool's loop device.
func poolHolders(dir string) string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/mountinfo")
	for _, mi := range procs {
		b, err := os.ReadFile(mi)
		if err != nil || !strings.Contains(string(b), " "+dir+" ") {
			continue
		}
		pdir := filepath.Dir(mi)
		cmd, _ := os.ReadFile(filepath.Join(pdir, "cmdline"))
		out = append(out, filepath.Base(pdir)+" "+strings.ReplaceAll(strings.TrimSpace(string(cmd)), "\x00", " "))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "; ")
}
