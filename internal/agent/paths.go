package agent

import (
	"path"
	"strings"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// maxPathLen bounds every path a caller sends (PATH_MAX on Linux).
const maxPathLen = 4096

// cleanPath validates a path from a caller and returns it cleaned: it must be
// absolute, at most maxPathLen bytes, and free of NUL bytes. Paths resolve
// inside the sandbox because the agent's root is the sandbox's root.
func cleanPath(p string) (string, error) {
	switch {
	case p == "":
		return "", sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "path is empty; give an absolute path such as /home/user/file.txt")
	case len(p) > maxPathLen:
		return "", sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "path is %d bytes long; the limit is %d", len(p), maxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return "", sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "path %q contains a NUL byte", p)
	case !path.IsAbs(p):
		return "", sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "path %q is relative; give an absolute path", p)
	}
	return path.Clean(p), nil
}
