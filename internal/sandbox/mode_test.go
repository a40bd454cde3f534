package sandbox

import (
	"os"
	"testing"
)

func TestUnixModeRoundTrip(t *testing.T) {
	for _, c := range []struct {
		unix uint32
		mode os.FileMode
	}{
		{0o644, 0o644},
		{0o4755, os.ModeSetuid | 0o755},
		{0o2750, os.ModeSetgid | 0o750},
		{0o1777, os.ModeSticky | 0o777},
		{0o7000, os.ModeSetuid | os.ModeSetgid | os.ModeSticky},
	} {
		if got := FileModeFromUnix(c.unix); got != c.mode {
			t.Errorf("FileModeFromUnix(%#o) = %v, want %v", c.unix, got, c.mode)
		}
		if got := UnixMode(c.mode); got != c.unix {
			t.Errorf("UnixMode(%v) = %#o, want %#o", c.mode, got, c.unix)
		}
	}
	if got := UnixMode(os.ModeDir | 0o755); got != 0o755 {
		t.Errorf("UnixMode(dir 0755) = %#o: the type bits must not leak into it", got)
	}
}
