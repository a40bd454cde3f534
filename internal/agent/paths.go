package agent

import (
	"path"
	"strings"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// maxPathLen bounds every path a caller sends (PATH_MAX on Linux).
const maxPathLen = 4096

// cleanPath validates a path from a caller and returns it absolute and
// cleaned: at most maxPathLen bytes, free of NUL bytes, and, when relative
// (as W&B's examples write them: write_file("hello.txt")), taken from dir,
// the sandbox's working dir. Paths resolve inside the sandbox because the
// agent's root is the sandbox's root.
func cleanPath(p, dir string) (string, error) {
	switch {
	case p == "":
		return "", sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "path is empty; give a path such as /home/user/file.txt, or one relative to the sandbox's working dir")
	case len(p) > maxPathLen:
		return "", sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "path is %d bytes long; the limit is %d", len(p), maxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return "", sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "path %q contains a NUL byte", p)
	case !path.IsAbs(p):
		if !path.IsAbs(dir) {
			dir = "/"
		}
		p = path.Join(dir, p)
		if len(p) > maxPathLen {
			return "", sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "path %q is %d bytes long once taken from the working dir; the limit is %d", p, len(p), maxPathLen)
		}
	}
	return path.Clean(p), nil
}

// workDir is the sandbox's working dir, which relative paths are taken
// from: the start's, else the image's, else / (before the Init).
func (s *Server) workDir() string {
	_, dir, _ := s.sandboxDefaults()
	return dir
}
