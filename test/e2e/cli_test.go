package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLI drives the sbx binary: run (attached and detached), exec, ls,
// inspect, logs, cp both ways, stop, rm, and its exit codes.
func TestCLI(t *testing.T) {
	s := startServer(t)

	// run without -d streams the output and exits with the command's code.
	out, errOut, code := s.cli("", "run", "--image", "busybox", "--", "sh", "-c", "echo hello from sbx; exit 4")
	if code != 4 || !strings.Contains(out, "hello from sbx") {
		t.Errorf("sbx run: code %d stdout %q stderr %q; want 4 and the greeting", code, out, errOut)
	}
	out, _, code = s.cli("", "run", "--rm", "--image", "busybox", "--", "true")
	if code != 0 {
		t.Errorf("sbx run --rm true: code %d (%s)", code, out)
	}

	// run -d prints the id of an idle sandbox.
	out, errOut, code = s.cli("", "run", "-d", "--image", "busybox", "--tag", "cli", "-e", "FOO=bar")
	id := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(id, "sb-") {
		t.Fatalf("sbx run -d: code %d stdout %q stderr %q", code, out, errOut)
	}
	out, _, code = s.cli("", "exec", id, "sh", "-c", "echo $FOO; exit 5")
	if code != 5 || out != "bar\n" {
		t.Errorf("sbx exec: code %d stdout %q; want 5 and bar", code, out)
	}
	out, _, code = s.cli("piped input", "exec", "-i", id, "cat")
	if code != 0 || out != "piped input" {
		t.Errorf("sbx exec -i cat: code %d stdout %q", code, out)
	}

	// ls, with filters and JSON.
	out, _, code = s.cli("", "ls", "-q", "--tag", "cli")
	if code != 0 || strings.TrimSpace(out) != id {
		t.Errorf("sbx ls -q --tag cli: code %d %q; want %s", code, out, id)
	}
	out, _, code = s.cli("", "ls", "--json")
	if code != 0 || !strings.Contains(out, id) || !json.Valid([]byte(out)) {
		t.Errorf("sbx ls --json: code %d %q", code, out)
	}
	out, _, code = s.cli("", "inspect", id)
	if code != 0 || !strings.Contains(out, "RUNNING") || !json.Valid([]byte(out)) {
		t.Errorf("sbx inspect: code %d %q", code, out)
	}

	// cp: a directory in, a file out, and a file to stdout.
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "d", "e"), 0o755)
	os.WriteFile(filepath.Join(src, "d", "a.txt"), []byte("alpha"), 0o644)
	os.WriteFile(filepath.Join(src, "d", "e", "b.txt"), []byte("beta"), 0o644)
	if _, errOut, code := s.cli("", "cp", filepath.Join(src, "d"), id+":/work"); code != 0 {
		t.Fatalf("sbx cp dir in: code %d %s", code, errOut)
	}
	out, _, _ = s.cli("", "exec", id, "cat", "/work/a.txt", "/work/e/b.txt")
	if out != "alphabeta" {
		t.Errorf("files copied in read %q, want alphabeta", out)
	}
	dst := filepath.Join(t.TempDir(), "b-out.txt")
	if _, errOut, code := s.cli("", "cp", id+":/work/e/b.txt", dst); code != 0 {
		t.Errorf("sbx cp file out: code %d %s", code, errOut)
	} else if b, _ := os.ReadFile(dst); string(b) != "beta" {
		t.Errorf("file copied out holds %q", b)
	}
	if out, _, code := s.cli("", "cp", id+":/work/a.txt", "-"); code != 0 || out != "alpha" {
		t.Errorf("sbx cp to stdout: code %d %q", code, out)
	}

	// logs of a sandbox with a main command.
	out, _, _ = s.cli("", "run", "-d", "--image", "busybox", "--", "sh", "-c", "for i in 1 2 3; do echo line$i; done")
	logID := strings.TrimSpace(out)
	out, errOut, code = s.cli("", "logs", "-f", logID)
	if code != 0 || out != "line1\nline2\nline3\n" {
		t.Errorf("sbx logs -f: code %d %q %s", code, out, errOut)
	}
	out, _, code = s.cli("", "logs", "--tail", "1", logID)
	if code != 0 || out != "line3\n" {
		t.Errorf("sbx logs --tail 1: code %d %q", code, out)
	}

	// stop, then rm; an unknown id is a clear error with exit 1.
	if _, errOut, code := s.cli("", "stop", id); code != 0 {
		t.Errorf("sbx stop: code %d %s", code, errOut)
	}
	out, _, _ = s.cli("", "inspect", id)
	if !strings.Contains(out, "TERMINATED") {
		t.Errorf("inspect after stop: %s", out)
	}
	if _, errOut, code := s.cli("", "rm", id, logID); code != 0 {
		t.Errorf("sbx rm: code %d %s", code, errOut)
	}
	_, errOut, code = s.cli("", "inspect", id)
	if code != 1 || !strings.Contains(errOut, "SANDBOX_NOT_FOUND") && !strings.Contains(strings.ToLower(errOut), "not found") {
		t.Errorf("inspect a removed sandbox: code %d stderr %q; want 1 and not found", code, errOut)
	}
	// A usage error exits 2.
	if _, _, code := s.cli("", "exec"); code != 2 {
		t.Errorf("sbx exec without args: code %d, want 2", code)
	}
}
