package sandbox

import "os"

// The API carries a file's mode as a Unix mode of at most 0o7777: the
// permission bits and the setuid, setgid and sticky bits. Go's os.FileMode
// keeps the last three elsewhere (os.ModeSetuid …), so a plain conversion
// would turn 0o4755 into 0o755 or into nonsense.

// FileModeFromUnix returns the os.FileMode of Unix mode m (its bits above
// 0o7777 are ignored).
func FileModeFromUnix(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// UnixMode returns the permission, setuid, setgid and sticky bits of m as
// a Unix mode, the inverse of FileModeFromUnix.
func UnixMode(m os.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}
