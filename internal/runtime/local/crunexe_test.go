package local

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sbx-run/sbx/internal/testenv"
)

// TestCrunLink: the link runs crun from a memfd sealed exactly as crun
// checks for, so crun does not clone itself again.
func TestCrunLink(t *testing.T) {
	testenv.Require(t, true, "crun")
	path, err := exec.LookPath("crun")
	if err != nil {
		t.Fatal(err)
	}
	link, err := crunLink(path, t.TempDir())
	if err != nil {
		t.Fatalf("crunLink: %v", err)
	}
	if filepath.Base(link) != "crun" {
		t.Errorf("link %s is not named crun: the orphan sweep knows crun's processes by that name", link)
	}
	f, err := os.Open(link)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0); err != nil || seals != crunSeals {
		t.Errorf("seals %#x (%v), want %#x", seals, err, crunSeals)
	}
	if w, err := os.OpenFile(link, os.O_WRONLY, 0); err == nil {
		if _, err := w.Write([]byte("x")); err == nil {
			t.Error("the sealed copy is writable")
		}
		w.Close()
	}
	out, err := exec.Command(link, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "crun version") {
		t.Errorf("%s --version: %v: %s", link, err, out)
	}
	// A second Runtime shares the copy.
	again, err := sealedCopy(path)
	if first, _ := os.Readlink(link); err != nil || again != first {
		t.Errorf("second copy %q (%v), want the first, %q", again, err, first)
	}
}
