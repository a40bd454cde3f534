package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

func init() { commands = append(commands, newCpCmd) }

// Bounds on a directory copied out of a sandbox, whose listing we do not
// control.
const (
	maxCopyDepth   = 256
	maxCopyEntries = 1_000_000
)

func newCpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy files and directories between this machine and a sandbox",
		Long: `Copy a file or a directory tree into or out of a sandbox. One side is
SANDBOX:/absolute/path, the other a local path ("-" as DST writes a file to
stdout). When DST is an existing directory the copy goes inside it, under the
source's name. Symlinks and special files are skipped with a warning.`,
		Example: `  sbx cp ./src sb-123:/work
  sbx cp sb-123:/work/out.json .
  sbx cp sb-123:/var/log/app.log -`,
		Args: exactArgs(2, "SRC and DST"),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := parseLoc(args[0])
			if err != nil {
				return err
			}
			dst, err := parseLoc(args[1])
			if err != nil {
				return err
			}
			if src.remote == dst.remote {
				return usageErrorf("one of SRC and DST must be SANDBOX:/path and the other a local path")
			}
			client, err := newClient()
			if err != nil {
				return err
			}
			c := &copier{ctx: cmd.Context(), warn: cmd.ErrOrStderr(), stdout: cmd.OutOrStdout()}
			if dst.remote {
				c.sb = client.FromID(dst.id)
				return c.upload(src.path, dst.path)
			}
			c.sb = client.FromID(src.id)
			return c.download(src.path, dst.path)
		},
	}
}

// loc is one side of a copy.
type loc struct {
	remote bool
	id     string
	path   string
}

// parseLoc reads SANDBOX:/path as remote; anything starting with "/" or
// ".", or without a colon, is local (so "./a:b" names a local file).
func parseLoc(s string) (loc, error) {
	if s == "" {
		return loc{}, usageErrorf("empty path")
	}
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") || s == "-" {
		return loc{path: s}, nil
	}
	id, p, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(id, "/") {
		return loc{path: s}, nil
	}
	if id == "" {
		return loc{}, usageErrorf("%q: the sandbox id before the colon is missing", s)
	}
	if !path.IsAbs(p) {
		return loc{}, usageErrorf("%q: the path in the sandbox must be absolute (%s:/%s)", s, id, p)
	}
	return loc{remote: true, id: id, path: p}, nil
}

type copier struct {
	ctx     context.Context
	sb      *sbx.Sandbox
	warn    io.Writer
	stdout  io.Writer
	entries int
}

func (c *copier) skip(p string, why string) {
	fmt.Fprintf(c.warn, "sbx: skipping %s: %s\n", p, why)
}

// upload copies a local file or tree to dst in the sandbox.
func (c *copier) upload(src, dst string) error {
	if src == "-" {
		return usageErrorf("reading from stdin (-) is not supported; copy a file or directory")
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if st, err := c.sb.Stat(c.ctx, dst); err == nil && st.IsDir {
		dst = path.Join(dst, filepath.Base(filepath.Clean(src)))
	} else if err != nil && !errors.Is(err, sbx.ErrNotFound) {
		return err
	}
	if !fi.IsDir() {
		return c.uploadFile(src, dst, fi.Mode())
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := path.Join(dst, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return c.sb.MakeDir(c.ctx, target, uploadMode(info.Mode()))
		case info.Mode().IsRegular():
			return c.uploadFile(p, target, info.Mode())
		default:
			c.skip(p, "not a regular file or directory")
			return nil
		}
	})
}

func (c *copier) uploadFile(src, dst string, mode fs.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = c.sb.WriteFileFrom(c.ctx, dst, f, uploadMode(mode))
	return err
}

// uploadMode is the mode a copied file or dir gets in the sandbox: its
// permission, setuid, setgid and sticky bits, as `cp -p` keeps them.
// Downloads keep the permission bits only: a file from a sandbox must not
// become setuid on the host of whoever copies it out.
func uploadMode(m fs.FileMode) fs.FileMode {
	return m & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// download copies a file or tree at src in the sandbox to a local dst.
func (c *copier) download(src, dst string) error {
	st, err := c.sb.Stat(c.ctx, src)
	if err != nil {
		return err
	}
	if dst == "-" {
		if st.IsDir {
			return usageErrorf("%s is a directory: copy it to a local directory, not to stdout", src)
		}
		_, err := c.sb.ReadFileTo(c.ctx, src, c.stdout)
		return err
	}
	if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
		name := path.Base(src)
		if !safeName(name) {
			name = "root"
		}
		dst = filepath.Join(dst, name)
	}
	switch {
	case st.IsDir:
		return c.downloadDir(src, dst, 0)
	case st.Mode.IsRegular():
		return c.downloadFile(src, dst, st.Mode.Perm())
	}
	return &sbx.Error{Kind: sbx.ErrInvalidArgument, Reason: "NOT_A_REGULAR_FILE",
		Message: src + " is neither a regular file nor a directory (a symlink or device): copy its target instead"}
}

func (c *copier) downloadDir(src, dst string, depth int) error {
	if depth > maxCopyDepth {
		return fmt.Errorf("%s is nested more than %d directories deep: copy a subdirectory instead", src, maxCopyDepth)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	entries, err := c.sb.ListDir(c.ctx, src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		c.entries++
		if c.entries > maxCopyEntries {
			return fmt.Errorf("more than %d entries under the source: copy a subdirectory instead", maxCopyEntries)
		}
		// Names come from the sandbox: never let one climb out of dst.
		if !safeName(e.Name) {
			c.skip(path.Join(src, e.Name), "unsafe name")
			continue
		}
		from, to := path.Join(src, e.Name), filepath.Join(dst, e.Name)
		switch {
		case e.IsDir:
			if err := c.downloadDir(from, to, depth+1); err != nil {
				return err
			}
		case e.Mode.IsRegular():
			if err := c.downloadFile(from, to, e.Mode.Perm()); err != nil {
				return err
			}
		default:
			c.skip(from, "not a regular file or directory")
		}
	}
	return nil
}

func safeName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// downloadFile writes to a temporary file next to dst and renames it into
// place, so an interrupted copy never leaves a half-written dst.
func (c *copier) downloadFile(src, dst string, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".sbx-cp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := c.sb.ReadFileTo(c.ctx, src, tmp); err != nil {
		tmp.Close()
		return err
	}
	if perm == 0 {
		perm = 0o644
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
