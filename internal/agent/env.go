package agent

import (
	"sort"
	"strings"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Bounds of what a caller may pass to start a process.
const (
	maxArgs      = 4096
	maxEnvVars   = 4096
	maxArgvBytes = 1 << 20
)

// checkArgv validates a command line.
func checkArgv(argv []string) error {
	if len(argv) == 0 || argv[0] == "" {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "command is empty; give argv, such as [\"python\", \"-c\", \"print(1)\"]")
	}
	if len(argv) > maxArgs {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "command has %d arguments; the limit is %d", len(argv), maxArgs)
	}
	n := 0
	for _, a := range argv {
		n += len(a)
		if strings.IndexByte(a, 0) >= 0 {
			return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "command argument %q contains a NUL byte", a)
		}
	}
	if n > maxArgvBytes {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "command is %d bytes long; the limit is %d", n, maxArgvBytes)
	}
	return nil
}

// mergeEnv returns base ("K=V" entries) with the entries of over set; over
// wins. Keys of over are validated.
func mergeEnv(base []string, over map[string]string) ([]string, error) {
	if len(base)+len(over) > maxEnvVars {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "environment has %d variables; the limit is %d", len(base)+len(over), maxEnvVars)
	}
	n := 0
	for k, v := range over {
		n += len(k) + len(v)
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "environment variable %q is malformed: names are non-empty without '=' or NUL, values have no NUL", k)
		}
	}
	if n > maxArgvBytes {
		return nil, sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, "environment is %d bytes long; the limit is %d", n, maxArgvBytes)
	}
	out := make([]string, 0, len(base)+len(over))
	seen := make(map[string]int, len(base))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := seen[k]; ok {
			out[i] = kv // a later entry wins, as in the image config
			continue
		}
		seen[k] = len(out)
		out = append(out, kv)
	}
	keys := make([]string, 0, len(over))
	for k := range over {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kv := k + "=" + over[k]
		if i, ok := seen[k]; ok {
			out[i] = kv
		} else {
			seen[k] = len(out)
			out = append(out, kv)
		}
	}
	return out, nil
}

// envHas reports whether env sets key.
func envHas(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}
