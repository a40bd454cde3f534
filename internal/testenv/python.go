package testenv

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// pythonCacheKey names the cached Python image. Bump it whenever the build
// recipe below changes, so that old caches are not reused.
const pythonCacheKey = "python-bookworm-v1"

// DefaultCacheDir is where test images that take minutes to build are kept
// across runs and test processes. SBX_TEST_CACHE overrides it.
const DefaultCacheDir = "/var/cache/sbx-test"

// CacheDir returns the directory holding cached test images.
func CacheDir() string {
	if d := os.Getenv("SBX_TEST_CACHE"); d != "" {
		return d
	}
	return DefaultCacheDir
}

var (
	pythonMu    sync.Mutex
	pythonLayer v1.Layer
)

// PythonImage returns a Debian bookworm image with python3, made with
// debootstrap, with /usr/local/bin/python, python3 and python3.X links so
// that it runs commands such as `python --version` like the python:3.11
// image. The root filesystem is built once and cached under CacheDir; the
// first build takes minutes and prints progress to stderr.
func PythonImage(t testing.TB) v1.Image {
	t.Helper()
	Require(t, true, "debootstrap", "chroot")
	img, err := NewPythonImage(os.Stderr)
	if err != nil {
		t.Fatalf("python test image: %v", err)
	}
	return img
}

// NewPythonImage is PythonImage for use outside tests: it builds the cache if
// needed, writing progress to progress.
func NewPythonImage(progress io.Writer) (v1.Image, error) {
	layer, err := PythonLayer(progress)
	if err != nil {
		return nil, err
	}
	return newImage(layer, v1.Config{
		Env: []string{
			"PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
			"LANG=C.UTF-8",
		},
		Cmd: []string{"python3"},
	})
}

// PythonLayer returns the Python image's single layer, building and caching
// it first if no other run or process has. Concurrent callers, in this and
// other processes, wait for one build (a flock on the cache).
func PythonLayer(progress io.Writer) (v1.Layer, error) {
	pythonMu.Lock()
	defer pythonMu.Unlock()
	if pythonLayer != nil {
		return pythonLayer, nil
	}
	cache := CacheDir()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("create test image cache %s: %w", cache, err)
	}
	lock, err := os.OpenFile(filepath.Join(cache, pythonCacheKey+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	final := filepath.Join(cache, pythonCacheKey)
	layerPath := filepath.Join(final, "layer.tar.gz")
	if l, err := openCachedLayer(layerPath); err == nil {
		pythonLayer = l
		return l, nil
	}
	// Anything left here is from a build that died; we hold the lock, so
	// nobody else is using it.
	if err := removeStale(cache, final); err != nil {
		return nil, err
	}
	if err := buildPython(cache, final, progress); err != nil {
		return nil, err
	}
	l, err := openCachedLayer(layerPath)
	if err != nil {
		return nil, err
	}
	pythonLayer = l
	return l, nil
}

func removeStale(cache, final string) error {
	stale, _ := filepath.Glob(filepath.Join(cache, pythonCacheKey+".build-*"))
	if _, err := os.Stat(final); err == nil {
		stale = append(stale, final)
	}
	for _, d := range stale {
		if err := removeAllUnmounted(d); err != nil {
			return err
		}
	}
	return nil
}

// buildPython runs debootstrap in a temporary directory next to final and
// renames the finished layer into place, so that final exists only complete.
func buildPython(cache, final string, progress io.Writer) error {
	start := time.Now()
	tmp, err := os.MkdirTemp(cache, pythonCacheKey+".build-")
	if err != nil {
		return err
	}
	defer removeAllUnmounted(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	mirror := DebianMirror()
	fmt.Fprintf(progress, "sbx-test: building the python test image with debootstrap from %s (once; takes a few minutes)\n", mirror)
	// Mirrors fail a download now and then; a clean retry usually succeeds.
	const attempts = 3
	for i := 1; ; i++ {
		err = debootstrap(rootfs, mirror, &prefixWriter{w: progress, start: start})
		if err == nil {
			break
		}
		if i == attempts {
			return fmt.Errorf("debootstrap bookworm from %s failed %d times (see its output above; set SBX_TEST_DEBIAN_MIRROR to use another mirror): %w", mirror, attempts, err)
		}
		fmt.Fprintf(progress, "sbx-test: debootstrap failed (%v); retrying from scratch (%d of %d)\n", err, i+1, attempts)
		if err := removeAllUnmounted(rootfs); err != nil {
			return err
		}
		time.Sleep(time.Duration(i) * 5 * time.Second)
	}
	if err := finishPythonRootfs(rootfs); err != nil {
		return err
	}
	fmt.Fprintf(progress, "sbx-test: packing the python root filesystem into a layer (%s so far)\n", time.Since(start).Round(time.Second))
	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return err
	}
	lw, err := newLayerWriter(filepath.Join(out, "layer.tar.gz"))
	if err != nil {
		return err
	}
	if err := lw.addTree(rootfs, map[string]bool{"dev": true, "proc": true, "sys": true, "run": true, "tmp": true}); err != nil {
		lw.f.Close()
		return fmt.Errorf("pack %s: %w", rootfs, err)
	}
	if err := lw.Close(); err != nil {
		return err
	}
	if err := os.Rename(out, final); err != nil {
		return err
	}
	fmt.Fprintf(progress, "sbx-test: python test image cached in %s after %s\n", final, time.Since(start).Round(time.Second))
	return nil
}

func debootstrap(rootfs, mirror string, out io.Writer) error {
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include=python3", "bookworm", rootfs, mirror)
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	// debootstrap unmounts what it mounted, but not always when it fails.
	if uerr := unmountUnder(rootfs); uerr != nil && err == nil {
		err = uerr
	}
	return err
}

// finishPythonRootfs makes the debootstrapped tree look like the python:3.11
// image where tests notice, and drops what a container image does not carry.
func finishPythonRootfs(rootfs string) error {
	versioned, _ := filepath.Glob(filepath.Join(rootfs, "usr/bin/python3.[0-9]*"))
	sort.Strings(versioned)
	var exact string
	for _, v := range versioned {
		if !strings.Contains(filepath.Base(v), "-") { // skip python3.11-config and similar
			exact = filepath.Base(v)
			break
		}
	}
	if exact == "" {
		return fmt.Errorf("debootstrap produced no /usr/bin/python3.X in %s: is python3 in --include?", rootfs)
	}
	local := filepath.Join(rootfs, "usr/local/bin")
	if err := os.MkdirAll(local, 0o755); err != nil {
		return err
	}
	for name, target := range map[string]string{"python": "/usr/bin/python3", "python3": "/usr/bin/python3", exact: "/usr/bin/" + exact} {
		if err := os.Symlink(target, filepath.Join(local, name)); err != nil {
			return err
		}
	}
	// Host-specific files debootstrap copied in; a runtime provides its own.
	for _, f := range []string{"etc/resolv.conf", "etc/hostname"} {
		os.Remove(filepath.Join(rootfs, f))
	}
	for _, glob := range []string{"var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "var/log/*.log"} {
		matches, _ := filepath.Glob(filepath.Join(rootfs, glob))
		for _, m := range matches {
			if fi, err := os.Lstat(m); err == nil && fi.IsDir() && strings.HasSuffix(glob, "lists/*") {
				continue // keep lists/partial
			}
			if err := os.RemoveAll(m); err != nil {
				return err
			}
		}
	}
	return nil
}

// DebianMirror returns the Debian mirror to debootstrap from: SBX_TEST_DEBIAN_MIRROR,
// else the first bookworm "main" URI in this machine's apt sources, else
// http://deb.debian.org/debian.
func DebianMirror() string {
	if m := os.Getenv("SBX_TEST_DEBIAN_MIRROR"); m != "" {
		return m
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		if m := mirrorFromDeb822(f); m != "" {
			return m
		}
	}
	files, _ = filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, f := range append([]string{"/etc/apt/sources.list"}, files...) {
		if m := mirrorFromList(f); m != "" {
			return m
		}
	}
	return "http://deb.debian.org/debian"
}

// mirrorFromDeb822 reads a deb822 .sources file for a stanza with suite
// bookworm whose URI is a Debian archive (not debian-security).
func mirrorFromDeb822(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, stanza := range strings.Split(string(b), "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !hasWord(fields["types"], "deb") || !hasWord(fields["suites"], "bookworm") || !hasWord(fields["components"], "main") {
			continue
		}
		for _, u := range strings.Fields(fields["uris"]) {
			if debianArchive(u) {
				return u
			}
		}
	}
	return ""
}

// mirrorFromList reads a one-line-style sources.list.
func mirrorFromList(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		if len(w) >= 4 && w[0] == "deb" {
			if strings.HasPrefix(w[1], "[") { // options such as [signed-by=...]
				for len(w) > 1 && !strings.HasSuffix(w[1], "]") {
					w = append(w[:1], w[2:]...)
				}
				w = append(w[:1], w[2:]...)
			}
			if len(w) >= 4 && w[2] == "bookworm" && debianArchive(w[1]) {
				return w[1]
			}
		}
	}
	return ""
}

func debianArchive(uri string) bool {
	return (strings.HasPrefix(uri, "http://") || strings.HasPrefix(uri, "https://")) &&
		strings.HasSuffix(strings.TrimSuffix(uri, "/"), "/debian")
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// prefixWriter marks each line of debootstrap's output as the test image
// build's, with the time elapsed, so a long silence is not mistaken for a hang.
type prefixWriter struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	bol   bool
	begun bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		if !p.begun || p.bol {
			fmt.Fprintf(p.w, "sbx-test [%s] ", time.Since(p.start).Round(time.Second))
		}
		p.begun = true
		io.WriteString(p.w, line)
		p.bol = strings.HasSuffix(line, "\n")
	}
	return len(b), nil
}
