package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/cmd/sbx/fakeapi"
)

// cli runs the CLI in-process against a fresh fake API server.
type cli struct {
	t   *testing.T
	api *fakeapi.Server
}

func newCLI(t *testing.T) *cli {
	api, url := fakeapi.Start(t)
	t.Setenv("SBX_URL", url)
	t.Setenv("SBX_API_KEY", fakeapi.Key)
	t.Setenv("SBX_CONFIG_DIR", t.TempDir())
	return &cli{t: t, api: api}
}

// run returns the exit code, stdout and stderr of `sbx args...`.
func (c *cli) run(stdin string, args ...string) (int, string, string) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	code := execute(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// must runs a command that has to succeed and returns its stdout.
func (c *cli) must(args ...string) string {
	c.t.Helper()
	code, out, errOut := c.run("", args...)
	if code != 0 {
		c.t.Fatalf("sbx %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
	}
	return out
}

func TestRunPassesExitCodeAndOutput(t *testing.T) {
	c := newCLI(t)
	code, out, errOut := c.run("", "run", "--image", "busybox", "-e", "A=1", "--tag", "t1", "--memory", "64m", "--", "exit", "3")
	if code != 3 || out != "main output\n" || errOut != "main error\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, _ = c.run("", "run", "--rm", "--", "exit", "0")
	if code != 0 {
		t.Fatalf("exit 0 command: exit %d", code)
	}
}

func TestRunDetached(t *testing.T) {
	c := newCLI(t)
	id := strings.TrimSpace(c.must("run", "-d", "--lifetime", "5m"))
	if !strings.HasPrefix(id, "sb-") {
		t.Fatalf("run -d printed %q, want an id", id)
	}
	out := c.must("exec", id, "echo", "hi", "there")
	if out != "hi there\n" {
		t.Fatalf("exec stdout %q", out)
	}
	code, _, errOut := c.run("", "exec", id, "fail", "5", "oops")
	if code != 5 || errOut != "oops\n" {
		t.Fatalf("failing exec: exit %d, stderr %q", code, errOut)
	}
	code, out, _ = c.run("piped input", "exec", "-i", id, "cat")
	if code != 0 || out != "piped input" {
		t.Fatalf("exec -i: exit %d, stdout %q", code, out)
	}
	if code, _, errOut := c.run("", "exec", id, "nosuch"); code != 127 || !strings.Contains(errOut, "COMMAND_NOT_FOUND") {
		t.Fatalf("exec of a missing command: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := c.run("", "exec", "-t", id, "sh"); code != 2 || !strings.Contains(errOut, "terminal") {
		t.Fatalf("exec -t without a terminal: exit %d, stderr %q", code, errOut)
	}
}

func TestErrorsAndUsage(t *testing.T) {
	c := newCLI(t)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"bogus"}, 2, "unknown command"},
		{[]string{"run", "--nope"}, 2, "unknown flag"},
		{[]string{"run"}, 2, "give a command"},
		{[]string{"run", "-d", "--rm"}, 2, "--rm"},
		{[]string{"run", "--memory", "lots", "--", "x"}, 2, "memory"},
		{[]string{"run", "--lifetime", "-3s", "-d"}, 2, "lifetime"},
		{[]string{"exec", "sb-1"}, 2, "a sandbox id and a command"},
		{[]string{"inspect", "sb-nope"}, 1, "SANDBOX_NOT_FOUND"},
		{[]string{"run", "--image", "bad", "--", "exit", "0"}, 1, "did not start"},
		{[]string{"run", "--image", "quota", "-d"}, 1, "try again in 3s"},
		{[]string{"images", "pull", "nosuch"}, 1, "IMAGE_NOT_FOUND"},
		{[]string{"images", "rm"}, 2, "at least one image reference"},
		{[]string{"cp", "a", "b"}, 2, "one of SRC and DST"},
		{[]string{"cp", "sb-1:rel", "."}, 2, "absolute"},
	} {
		code, _, errOut := c.run("", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) || strings.Count(strings.TrimSpace(errOut), "\n") > 1 {
			t.Errorf("sbx %s: exit %d, stderr %q; want exit %d mentioning %q", strings.Join(tc.args, " "), code, errOut, tc.code, tc.msg)
		}
	}
	t.Setenv("SBX_API_KEY", "wrong")
	if code, _, errOut := c.run("", "ls"); code != 1 || !strings.Contains(errOut, "SBX_API_KEY") {
		t.Errorf("wrong key: exit %d, stderr %q", code, errOut)
	}
}

func TestLsInspectStopRm(t *testing.T) {
	c := newCLI(t)
	a := strings.TrimSpace(c.must("run", "-d", "--tag", "x", "--disk", "2g", "--memory", "512m"))
	b := strings.TrimSpace(c.must("run", "-d", "--tag", "y"))

	var list []sandboxJSON
	if err := json.Unmarshal([]byte(c.must("ls", "--json", "--tag", "x")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != a || list[0].Tags[0] != "x" {
		t.Fatalf("ls --json --tag x: %+v", list)
	}
	if ids := strings.Fields(c.must("ls", "-q")); len(ids) != 2 {
		t.Fatalf("ls -q: %v", ids)
	}
	if out := c.must("ls"); !strings.Contains(out, "STATE") || !strings.Contains(out, b) {
		t.Fatalf("ls table:\n%s", out)
	}
	if code, _, _ := c.run("", "ls", "--state", "SLEEPY"); code != 2 {
		t.Fatalf("ls --state SLEEPY: exit %d", code)
	}

	if code, _, errOut := c.run("", "rm", a); code != 1 || !strings.Contains(errOut, "sbx stop") {
		t.Fatalf("rm of a running sandbox: exit %d, stderr %q", code, errOut)
	}
	c.must("stop", "--grace", "1s", a)
	var insp []sandboxJSON
	if err := json.Unmarshal([]byte(c.must("inspect", a)), &insp); err != nil {
		t.Fatal(err)
	}
	if len(insp) != 1 || insp[0].State != "TERMINATED" {
		t.Fatalf("inspect after stop: %+v", insp)
	}
	if r := insp[0].Resources; r.DiskBytes != 2<<30 || r.MemoryBytes != 512<<20 {
		t.Errorf("inspect: resources %+v, want the disk and memory asked for", r)
	}
	c.must("rm", a)
	c.must("rm", "-f", b)
	if ids := strings.Fields(c.must("ls", "-q", "-a")); len(ids) != 0 {
		t.Fatalf("after rm: %v", ids)
	}
}

func TestLogs(t *testing.T) {
	c := newCLI(t)
	id := strings.TrimSpace(c.must("run", "-d", "--", "exit", "0"))
	code, out, errOut := c.run("", "logs", "-f", id)
	if code != 0 || out != "main output\n" || errOut != "main error\n" {
		t.Fatalf("logs -f: exit %d, %q, %q", code, out, errOut)
	}
	if code, _, _ := c.run("", "logs", "--tail", "-1", id); code != 2 {
		t.Fatalf("logs --tail -1: exit %d", code)
	}
}

func TestCpDirectoryRoundTrip(t *testing.T) {
	c := newCLI(t)
	id := strings.TrimSpace(c.must("run", "-d"))
	src := filepath.Join(t.TempDir(), "proj")
	files := map[string]string{"a.txt": "alpha", "sub/b.bin": strings.Repeat("b", 3<<20), "sub/deeper/c": "c"}
	for name, content := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	tool := filepath.Join(src, "tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tool, 0o755|fs.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	files["tool"] = "#!/bin/sh\n"
	c.must("cp", src, id+":/data")
	// Into the sandbox the setuid bit comes along, as with `cp -p`.
	if m := c.api.FileMode(id, "/data/tool"); m != 0o4755 {
		t.Errorf("mode of tool in the sandbox: %#o, want 04755", m)
	}

	dst := t.TempDir()
	c.must("cp", id+":/data", dst)
	// Out of it, never: a sandbox must not plant setuid files on the host.
	if fi, err := os.Stat(filepath.Join(dst, "data", "tool")); err != nil || fi.Mode()&fs.ModeSetuid != 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("mode of tool on the host: %v %v, want 0755 without setuid", fi.Mode(), err)
	}
	for name, content := range files {
		got, err := os.ReadFile(filepath.Join(dst, "data", name))
		if err != nil || string(got) != content {
			t.Errorf("%s: %d bytes, %v", name, len(got), err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, "data", "a.txt")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode of a.txt: %v %v", fi.Mode(), err)
	}

	// A single file, into an existing directory, and to stdout.
	c.must("cp", id+":/data/a.txt", dst)
	if got, _ := os.ReadFile(filepath.Join(dst, "a.txt")); string(got) != "alpha" {
		t.Errorf("file into dir: %q", got)
	}
	if out := c.must("cp", id+":/data/sub/deeper/c", "-"); out != "c" {
		t.Errorf("cp to stdout: %q", out)
	}
	if code, _, errOut := c.run("", "cp", id+":/nope", dst); code != 1 || !strings.Contains(errOut, "FILE_NOT_FOUND") {
		t.Errorf("missing source: exit %d, %q", code, errOut)
	}
}

func TestParseHelpers(t *testing.T) {
	for in, want := range map[string]loc{
		"sb-1:/a/b": {remote: true, id: "sb-1", path: "/a/b"},
		"./x:y":     {path: "./x:y"},
		"/abs":      {path: "/abs"},
		"plain":     {path: "plain"},
		"dir/x:y":   {path: "dir/x:y"},
		"-":         {path: "-"},
	} {
		got, err := parseLoc(in)
		if err != nil || got != want {
			t.Errorf("parseLoc(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, want := range map[string]int64{"512m": 512 << 20, "2g": 2 << 30, "1GiB": 1 << 30, "1000": 1000, "1.5k": 1536} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if m, err := parseCPUs("1.5"); err != nil || m != 1500 {
		t.Errorf("parseCPUs(1.5) = %d, %v", m, err)
	}
	t.Setenv("FROM_SHELL", "v")
	env, err := parseEnv([]string{"A=1", "B=x=y", "FROM_SHELL", "UNSET_IN_SHELL_XYZ"})
	if err != nil || len(env) != 3 || env["B"] != "x=y" || env["FROM_SHELL"] != "v" {
		t.Errorf("parseEnv: %v %v", env, err)
	}
	if _, err := parseEnv([]string{"=v"}); err == nil {
		t.Error("parseEnv accepted an empty name")
	}
}
