package agent

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-run/sbx/internal/sandbox"
)

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "term": syscall.SIGTERM, "KILL": syscall.SIGKILL, "2": syscall.SIGINT} {
		if got, err := parseSignal(in); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "65", "SIGNOPE", "-1"} {
		if _, err := parseSignal(in); !errors.Is(err, sandbox.ErrInvalidArgument) {
			t.Errorf("parseSignal(%q): %v, want InvalidArgument", in, err)
		}
	}
}

func TestMergeEnv(t *testing.T) {
	got, err := mergeEnv([]string{"A=1", "B=2", "A=3"}, map[string]string{"B": "x", "C": "y"})
	if err != nil || strings.Join(got, " ") != "A=3 B=x C=y" {
		t.Fatalf("mergeEnv: %q %v", got, err)
	}
	for _, bad := range []map[string]string{{"": "x"}, {"A=B": "x"}, {"A": "x\x00"}} {
		if _, err := mergeEnv(nil, bad); !errors.Is(err, sandbox.ErrInvalidArgument) {
			t.Errorf("mergeEnv(%q): %v", bad, err)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for _, c := range []struct{ in, dir, want string }{
		{"/a/./b/../c/", "/w", "/a/c"},
		{"/../../etc", "/w", "/etc"},
		{"x/y", "/w", "/w/x/y"},
		{"../../../etc", "/w", "/etc"},
		{"x", "", "/x"},
		{".", "/", "/"},
	} {
		if p, err := cleanPath(c.in, c.dir); err != nil || p != c.want {
			t.Errorf("cleanPath(%q, %q) = %q, %v; want %q", c.in, c.dir, p, err, c.want)
		}
	}
	for _, bad := range []string{"", "a\x00b", strings.Repeat("a", maxPathLen+1)} {
		if _, err := cleanPath(bad, "/"); err == nil {
			t.Errorf("cleanPath(%q) worked", bad)
		}
	}
	if _, err := cleanPath(strings.Repeat("a", maxPathLen-2), "/long"); err == nil {
		t.Error("a relative path over the limit once joined was accepted")
	}
}

func TestLookupUser(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nalice:x:1000:\nstaff:x:50:alice,bob\ndocker:x:999:alice\n"), 0o644)
	cases := map[string]struct {
		uid, gid uint32
		groups   int
		home     string
	}{
		"alice":       {1000, 1000, 2, "/home/alice"},
		"1000":        {1000, 1000, 2, "/home/alice"},
		"alice:staff": {1000, 50, 2, "/home/alice"},
		"4242":        {4242, 0, 0, "/"},
		"4242:7":      {4242, 7, 0, "/"},
	}
	for spec, want := range cases {
		id, err := lookupUser(root, spec)
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		if id.cred.Uid != want.uid || id.cred.Gid != want.gid || len(id.cred.Groups) != want.groups || id.home != want.home {
			t.Errorf("%s: %+v home %s, want %+v", spec, id.cred, id.home, want)
		}
	}
	for _, bad := range []string{"bob", "alice:nogroup", strings.Repeat("x", 300)} {
		if _, err := lookupUser(root, bad); !errors.Is(err, sandbox.ErrInvalidArgument) {
			t.Errorf("%s: %v, want InvalidArgument", bad, err)
		}
	}
}

// TestLogMadeOnFirstWrite: the log's files appear with the first byte
// written, not before; a follower that opened it before sees that byte.
func TestLogMadeOnFirstWrite(t *testing.T) {
	dir := t.TempDir()
	w, err := openLog(dir, DefaultLogMaxBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	r, err := newLogReader(dir, 0, w)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if n, err := w.Write(nil); n != 0 || err != nil {
		t.Fatalf("empty write: %d, %v", n, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("files before the first byte: %v", entries)
	}
	// A host reader (no writer) finds an empty log.
	hr, err := newLogReader(dir, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hr.Next(context.Background()); err != io.EOF {
		t.Fatalf("host read of a log not yet made: %v, want EOF", err)
	}
	hr.Close()
	got := make(chan string, 1)
	go func() {
		b, err := r.Next(context.Background())
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(b)
	}()
	if _, err := w.Write([]byte("first\n")); err != nil {
		t.Fatal(err)
	}
	if g := <-got; g != "first\n" {
		t.Fatalf("follower read %q", g)
	}
	for _, name := range []string{LogFile, indexName(LogFile)} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("after the first write: %v", err)
		}
	}
	w.close()
	if _, err := w.Write([]byte("late")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after close: %v, want ErrClosed", err)
	}
}

func TestLogTailAndRotation(t *testing.T) {
	dir := t.TempDir()
	// 10 bytes of text and the one index record of a file.
	w, err := openLog(dir, 10+indexRecord)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1e9, 0)
	w.now = func() time.Time { return at }
	w.Write([]byte("one\ntwo\nthree\nfour"))
	w.Write([]byte("\nfive\n"))
	w.end()
	read := func(tail int) string {
		r, err := newLogReader(dir, tail, w)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var b strings.Builder
		for {
			data, err := r.Next(context.Background())
			if err == io.EOF {
				return b.String()
			}
			if err != nil {
				t.Fatal(err)
			}
			b.Write(data)
		}
	}
	// Only the last rotation is kept: at most 2x10 bytes.
	if got := read(0); len(got) > 20 || !strings.HasSuffix(got, "four\nfive\n") {
		t.Fatalf("all kept: %q", got)
	}
	if got := read(1); got != "five\n" {
		t.Fatalf("tail 1: %q", got)
	}
	if got := read(2); got != "four\nfive\n" {
		t.Fatalf("tail 2: %q", got)
	}
	w.close()
}
