package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds on what one layer tar may contain.
const (
	maxEntries     = 1 << 20
	maxNameLen     = 4096
	maxXattrs      = 64
	maxXattrValue  = 64 << 10
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// unsafeLayerError is a layer tar that is malformed or tries to write outside
// its directory. It is the image's fault, not the host's.
type unsafeLayerError struct{ msg string }

func (e *unsafeLayerError) Error() string { return e.msg }

func unsafef(format string, args ...any) error {
	return &unsafeLayerError{fmt.Sprintf(format, args...)}
}

// unpacker writes one layer tar into its own directory in overlayfs form.
// Every write goes through an os.Root on the directory, and the parents of
// each entry are checked to be real directories (never symlinks) first, so a
// hostile tar can neither name a path outside the directory nor write through
// a symlink that an earlier entry created.
type unpacker struct {
	dir      string   // absolute layer dir
	root     *os.Root // the same, as a root
	realDirs map[string]bool
	dirMeta  []*tar.Header
	size     int64
	limit    int64 // of size; 0: none
}

// errLayerTooLarge is a layer whose file content passed the unpacker's limit.
var errLayerTooLarge = errors.New("the layer unpacks to more than the image size limit")

// unpack extracts the tar stream r into dir (which exists and is empty) and
// returns the number of bytes of file content written, at most limit
// (0: no limit; more fails with errLayerTooLarge).
func unpack(dir string, r io.Reader, limit int64) (int64, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	u := &unpacker{dir: dir, root: root, realDirs: map[string]bool{".": true}, limit: limit}
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
		if n >= maxEntries {
			return 0, unsafef("layer has more than %d entries", maxEntries)
		}
		if err := u.entry(hdr, tr); err != nil {
			return 0, err
		}
	}
	// Directory times last: creating entries inside a directory changes its
	// mtime. Deepest first, so setting a parent's time is not undone.
	for _, h := range slices.Backward(u.dirMeta) {
		if !u.realDirs[h.Name] {
			continue // replaced by a later entry
		}
		if err := u.setTimes(h.Name, h); err != nil {
			return 0, err
		}
	}
	return u.size, nil
}

// cleanName turns a tar entry name into a clean path relative to the layer
// root, rejecting any ".." component.
func cleanName(n string) (string, error) {
	if len(n) > maxNameLen || strings.IndexByte(n, 0) >= 0 {
		return "", unsafef("entry name %.64q... is too long or has a NUL byte", n)
	}
	for _, c := range strings.Split(n, "/") {
		if c == ".." {
			return "", unsafef("entry %q has a \"..\" component; refusing to write outside the layer", n)
		}
	}
	p := path.Clean("/" + n)[1:]
	if p == "" {
		p = "."
	}
	return p, nil
}

func (u *unpacker) entry(hdr *tar.Header, tr io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	hdr.Name = name
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			u.dirMeta = append(u.dirMeta, hdr)
			return u.setMeta(name, hdr)
		}
		return unsafef("entry %q names the layer root but is not a directory", hdr.Name)
	}
	parent, base := path.Dir(name), path.Base(name)

	if strings.HasPrefix(base, whiteoutPrefix) {
		if err := u.ensureDir(parent); err != nil {
			return err
		}
		switch {
		case base == opaqueMarker:
			// The directory hides everything below it in lower layers.
			return u.setxattr(parent, "trusted.overlay.opaque", []byte("y"))
		case strings.HasPrefix(base, whiteoutPrefix+whiteoutPrefix):
			return nil // other aufs metadata (.wh..wh.plnk, ...): not content
		}
		hidden := base[len(whiteoutPrefix):]
		if hidden == "" || hidden == "." {
			return unsafef("whiteout entry %q names no file", name)
		}
		target := path.Join(parent, hidden)
		if err := u.removeExisting(target); err != nil {
			return err
		}
		// overlayfs whiteout: a 0/0 character device in place of the name.
		return unix.Mknod(u.abs(target), unix.S_IFCHR, 0)
	}

	if err := u.ensureDir(parent); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		fi, err := u.root.Lstat(name)
		switch {
		case err == nil && fi.IsDir():
		case err == nil || !errors.Is(err, fs.ErrNotExist):
			if err := u.removeExisting(name); err != nil {
				return err
			}
			fallthrough
		default:
			if err := u.root.Mkdir(name, 0o700); err != nil {
				return err
			}
		}
		u.realDirs[name] = true
		u.dirMeta = append(u.dirMeta, hdr)
		return u.setMeta(name, hdr)

	case tar.TypeReg, tar.TypeRegA:
		if err := u.removeExisting(name); err != nil {
			return err
		}
		// O_EXCL: never open through whatever might be at name.
		f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		src := tr
		if u.limit > 0 {
			if hdr.Size > u.limit-u.size {
				f.Close()
				return errLayerTooLarge
			}
			src = io.LimitReader(tr, u.limit-u.size)
		}
		n, err := io.Copy(f, src)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		u.size += n
		return u.setMeta(name, hdr)

	case tar.TypeSymlink:
		if len(hdr.Linkname) > maxNameLen {
			return unsafef("symlink %q has a target longer than %d bytes", name, maxNameLen)
		}
		if err := u.removeExisting(name); err != nil {
			return err
		}
		// The target is stored as is: it is resolved inside the container's
		// root at run time, never by us.
		if err := u.root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		return u.setMeta(name, hdr)

	case tar.TypeLink:
		target, err := cleanName(hdr.Linkname)
		if err != nil {
			return err
		}
		if err := u.checkDirs(path.Dir(target)); err != nil {
			return err
		}
		fi, err := u.root.Lstat(target)
		if err != nil {
			return unsafef("hard link %q -> %q: the target is not in this layer", name, hdr.Linkname)
		}
		if fi.IsDir() {
			return unsafef("hard link %q -> %q: the target is a directory", name, hdr.Linkname)
		}
		if target == name {
			return nil
		}
		if err := u.removeExisting(name); err != nil {
			return err
		}
		// link(2) without AT_SYMLINK_FOLLOW links a symlink itself, so the
		// target's own symlink (if any) is not followed either.
		return u.root.Link(target, name)

	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if err := u.removeExisting(name); err != nil {
			return err
		}
		if hostDevice(hdr) {
			// Never a device node on the host: it would be a way into the
			// host's devices for anyone who reaches the layer, and in a
			// sandbox the runtime's own /dev and device rules apply anyway.
			// A 0/0 character device (an overlay whiteout) is no device.
			return nil
		}
		mode := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode = unix.S_IFCHR
		case tar.TypeBlock:
			mode = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknod(u.abs(name), mode|0o600, int(dev)); err != nil {
			return fmt.Errorf("mknod %q: %w", name, err)
		}
		return u.setMeta(name, hdr)

	case tar.TypeXGlobalHeader:
		return nil
	}
	return unsafef("entry %q has unsupported tar type %q", name, hdr.Typeflag)
}

// hostDevice reports whether hdr is a character or block device other than
// the 0/0 character device overlayfs uses as a whiteout.
func hostDevice(hdr *tar.Header) bool {
	switch hdr.Typeflag {
	case tar.TypeChar:
		return hdr.Devmajor != 0 || hdr.Devminor != 0
	case tar.TypeBlock:
		return true
	}
	return false
}

// abs is the host path of a layer-relative name. It is only used for calls
// that os.Root lacks (mknod, xattrs, symlink times), and only on names whose
// parents checkDirs or ensureDir verified and whose last component we just
// created, with calls that do not follow a final symlink.
func (u *unpacker) abs(name string) string { return filepath.Join(u.dir, name) }

// ensureDir makes dir and its parents exist as real directories.
func (u *unpacker) ensureDir(dir string) error {
	if u.realDirs[dir] {
		return nil
	}
	if err := u.ensureDir(path.Dir(dir)); err != nil {
		return err
	}
	fi, err := u.root.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := u.root.Mkdir(dir, 0o755); err != nil {
			return err
		}
	case err != nil:
		return err
	case !fi.IsDir():
		return unsafef("%q is used as a directory but is a %s in this layer; a layer's entries are never written through a symlink", dir, fi.Mode().Type())
	}
	u.realDirs[dir] = true
	return nil
}

// checkDirs verifies that dir and its parents are real directories, without
// creating anything.
func (u *unpacker) checkDirs(dir string) error {
	for d := dir; !u.realDirs[d]; d = path.Dir(d) {
		fi, err := u.root.Lstat(d)
		if err != nil || !fi.IsDir() {
			return unsafef("%q is not a directory in this layer", d)
		}
	}
	return nil
}

// removeExisting removes whatever an earlier entry of this layer put at name.
func (u *unpacker) removeExisting(name string) error {
	fi, err := u.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return u.root.Remove(name)
	}
	for d := range u.realDirs {
		if d == name || strings.HasPrefix(d, name+"/") {
			delete(u.realDirs, d)
		}
	}
	return u.root.RemoveAll(name)
}

// setMeta applies ownership, mode, xattrs and times. Order matters: chown
// clears setuid bits and file capabilities, so it goes first.
func (u *unpacker) setMeta(name string, hdr *tar.Header) error {
	if err := u.root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeSymlink {
		mode := hdr.FileInfo().Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
		if err := u.root.Chmod(name, mode); err != nil {
			return err
		}
	}
	n := 0
	for k, v := range hdr.PAXRecords {
		key, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		// trusted.* (overlay.redirect, metacopy, ...) would steer overlayfs
		// itself; an image has no business setting them.
		if strings.HasPrefix(key, "trusted.") {
			continue
		}
		if n++; n > maxXattrs || len(v) > maxXattrValue {
			return unsafef("entry %q has more than %d xattrs or one over %d bytes", name, maxXattrs, maxXattrValue)
		}
		if err := u.setxattr(name, key, []byte(v)); err != nil {
			return err
		}
	}
	if hdr.Typeflag == tar.TypeDir {
		return nil // after all entries, see unpack
	}
	return u.setTimes(name, hdr)
}

func (u *unpacker) setxattr(name, key string, val []byte) error {
	err := unix.Lsetxattr(u.abs(name), key, val, 0)
	if errors.Is(err, unix.ENOTSUP) && !strings.HasPrefix(key, "trusted.overlay.") {
		return nil // the cache's filesystem cannot hold it; not fatal for running
	}
	if err != nil {
		return fmt.Errorf("setting xattr %s on %q: %w", key, name, err)
	}
	return nil
}

func (u *unpacker) setTimes(name string, hdr *tar.Header) error {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	ts := []unix.Timespec{timespec(atime), timespec(hdr.ModTime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, u.abs(name), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times of %q: %w", name, err)
	}
	return nil
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{Sec: 0, Nsec: unix.UTIME_OMIT}
	}
	return unix.NsecToTimespec(t.UnixNano())
}
