package lifecycle

import (
	"io/fs"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Bounds on what a request may carry. Everything a user sends is bounded.
const (
	MaxImageRefLen  = 512
	MaxArgs         = 1024
	MaxArgsBytes    = 128 << 10
	MaxEnvVars      = 256
	MaxEnvKeyLen    = 256
	MaxEnvBytes     = 256 << 10
	MaxTags         = 64
	MaxTagLen       = 63
	MaxFiles        = 100
	MaxFileBytes    = 1 << 20
	MaxFilesBytes   = 10 << 20
	MaxPathLen      = 4096
	MaxRequestIDLen = 128
	MaxUserLen      = 256
	MaxIDLen        = 128
	maxCPUMillis    = 1 << 20
	maxMemoryBytes  = 1 << 40
	maxPids         = 1 << 22
	maxDiskBytes    = 1 << 40
	minDiskBytes    = 16 << 20
	fileModeBits    = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
)

var (
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	tagRE    = regexp.MustCompile(`^[A-Za-z0-9_.:=/-]+$`)
	userRE   = regexp.MustCompile(`^[A-Za-z0-9_.:-]*$`)
	// printableRE is what ids and request ids may contain.
	printableRE = regexp.MustCompile(`^[A-Za-z0-9_.:=/+-]*$`)
	// idRE is what sandbox, session and exec ids look like.
	idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

func invalid(format string, args ...any) error {
	return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, format, args...)
}

// validateImage checks an image reference's shape (not its existence).
func validateImage(ref string) error {
	if len(ref) > MaxImageRefLen {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidImageRef, "image reference is %d characters long: at most %d are allowed", len(ref), MaxImageRefLen)
	}
	if _, err := name.ParseReference(ref); err != nil {
		return sandbox.InvalidArgument(sandbox.ReasonInvalidImageRef, "image reference %q is malformed: write it like python:3.11, registry.example:5000/team/app:v1 or repo@sha256:<64 hex>", ref)
	}
	return nil
}

// ValidatePath checks an in-sandbox path from a user: absolute, or
// relative to the sandbox's working dir, which the agent resolves (the
// start's working dir, else the image's WORKDIR, else /).
func ValidatePath(field, p string) error {
	switch {
	case p == "":
		return sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "%s is empty: give a path such as /tmp/x, or one relative to the sandbox's working dir", field)
	case len(p) > MaxPathLen:
		return sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "%s is %d bytes long: at most %d are allowed", field, len(p), MaxPathLen)
	case strings.ContainsRune(p, 0):
		return sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "%s contains a NUL byte", field)
	}
	return nil
}

// ValidateID checks a sandbox, session or exec id from a user.
func ValidateID(field, id string) error {
	if len(id) > MaxIDLen || !idRE.MatchString(id) {
		return invalid("%s %q is malformed: pass the id a previous call returned", field, truncate(id, 80))
	}
	return nil
}

// ValidateCommand checks argv bounds.
func ValidateCommand(field string, argv []string) error {
	if len(argv) > MaxArgs {
		return invalid("%s has %d arguments: at most %d are allowed", field, len(argv), MaxArgs)
	}
	n := 0
	for _, a := range argv {
		n += len(a)
		if strings.ContainsRune(a, 0) {
			return invalid("%s has an argument containing a NUL byte", field)
		}
	}
	if n > MaxArgsBytes {
		return invalid("%s is %d bytes long: at most %d are allowed", field, n, MaxArgsBytes)
	}
	return nil
}

// ValidateEnv checks environment bounds and names.
func ValidateEnv(env map[string]string) error {
	if len(env) > MaxEnvVars {
		return invalid("env has %d variables: at most %d are allowed", len(env), MaxEnvVars)
	}
	n := 0
	for k, v := range env {
		if len(k) > MaxEnvKeyLen || !envKeyRE.MatchString(k) {
			return invalid("env name %q is invalid: use letters, digits and _, not starting with a digit, at most %d characters", truncate(k, 80), MaxEnvKeyLen)
		}
		if strings.ContainsRune(v, 0) {
			return invalid("env %s contains a NUL byte", k)
		}
		n += len(k) + len(v)
	}
	if n > MaxEnvBytes {
		return invalid("env is %d bytes in total: at most %d are allowed", n, MaxEnvBytes)
	}
	return nil
}

func validateTags(tags []string) error {
	if len(tags) > MaxTags {
		return invalid("%d tags given: at most %d are allowed", len(tags), MaxTags)
	}
	for _, t := range tags {
		if len(t) == 0 || len(t) > MaxTagLen || !tagRE.MatchString(t) {
			return invalid("tag %q is invalid: use 1 to %d characters of letters, digits and _.:=/-", truncate(t, 80), MaxTagLen)
		}
	}
	return nil
}

// ValidateTagFilter checks the tags of a List filter.
func ValidateTagFilter(tags []string) error { return validateTags(tags) }

func validateResources(r sandbox.Resources) error {
	switch {
	case r.CPUMillis < 0 || r.CPUMillis > maxCPUMillis:
		return invalid("resources.cpu_millis %d is out of range: give 0 (default) to %d", r.CPUMillis, maxCPUMillis)
	case r.MemoryBytes < 0 || r.MemoryBytes > maxMemoryBytes:
		return invalid("resources.memory_bytes %d is out of range: give 0 (default) to %d", r.MemoryBytes, maxMemoryBytes)
	case r.Pids < 0 || r.Pids > maxPids:
		return invalid("resources.pids %d is out of range: give 0 (default) to %d", r.Pids, maxPids)
	case r.DiskBytes < 0 || r.DiskBytes > maxDiskBytes:
		return invalid("resources.disk_bytes %d is out of range: give 0 (default) to %d", r.DiskBytes, maxDiskBytes)
	}
	return nil
}

func validateFiles(files []sandbox.File) error {
	if len(files) > MaxFiles {
		return invalid("%d mounted files given: at most %d are allowed", len(files), MaxFiles)
	}
	total := 0
	seen := map[string]bool{}
	for _, f := range files {
		if err := ValidatePath("mounted file path", f.Path); err != nil {
			return err
		}
		if b := path.Base(f.Path); path.Clean(f.Path) != f.Path || b == "/" || b == "." || b == ".." {
			return sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "mounted file path %q is not a clean file path: write it as %q", f.Path, path.Clean(f.Path))
		}
		if seen[f.Path] {
			return sandbox.InvalidArgument(sandbox.ReasonInvalidPath, "mounted file path %q is given twice", f.Path)
		}
		seen[f.Path] = true
		if len(f.Content) > MaxFileBytes {
			return sandbox.InvalidArgument(sandbox.ReasonFileTooLarge, "mounted file %s is %d bytes: at most %d are allowed; write larger files with WriteFile", f.Path, len(f.Content), MaxFileBytes)
		}
		if f.Mode&^fileModeBits != 0 {
			return invalid("mounted file %s has mode %v: only permission, setuid, setgid and sticky bits are allowed", f.Path, f.Mode)
		}
		total += len(f.Content)
	}
	if total > MaxFilesBytes {
		return sandbox.InvalidArgument(sandbox.ReasonFileTooLarge, "mounted files total %d bytes: at most %d are allowed; write larger files with WriteFile", total, MaxFilesBytes)
	}
	return nil
}

// validateLifetime checks a requested lifetime against the configured range.
func (m *Manager) validateLifetime(d time.Duration) error {
	if d < time.Second || d > m.cfg.MaxLifetime {
		return sandbox.InvalidArgument(sandbox.ReasonLifetimeTooLong,
			"max_lifetime_seconds %d is out of range: give 1 to %d seconds, or leave it unset for the default of %d",
			int64(d/time.Second), int64(m.cfg.MaxLifetime/time.Second), int64(m.cfg.DefaultLifetime/time.Second))
	}
	return nil
}

// validate checks a request after session defaults were merged.
func (m *Manager) validate(r *CreateRequest) error {
	checks := []func() error{
		func() error { return validateImage(r.Image) },
		func() error { return ValidateCommand("command", r.Command) },
		func() error { return ValidateEnv(r.Env) },
		func() error { return validateSecrets("secrets", r.Secrets, r.Env) },
		func() error { return validateTags(r.Tags) },
		func() error { return validateResources(r.Resources) },
		func() error { return m.validateDisk(r.Resources.DiskBytes) },
		func() error { return validateFiles(r.Files) },
		func() error { return m.validateLifetime(*r.MaxLifetime) },
		func() error { return ValidateNetwork(networkOf(r), r.SessionID) },
		func() error { return m.checkNameResolver(networkOf(r)) },
		func() error { return validatePorts(r.Ports) },
		func() error {
			if r.WorkingDir != "" {
				return ValidatePath("working_dir", r.WorkingDir)
			}
			return nil
		},
		func() error {
			if len(r.User) > MaxUserLen || !userRE.MatchString(r.User) {
				return invalid("user %q is invalid: give a uid, uid:gid or a user name", truncate(r.User, 80))
			}
			return nil
		},
		func() error {
			if len(r.RequestID) > MaxRequestIDLen || !printableRE.MatchString(r.RequestID) {
				return invalid("request_id is invalid: use at most %d characters of letters, digits and _.:=/+-", MaxRequestIDLen)
			}
			return nil
		},
	}
	for _, c := range checks {
		if err := c(); err != nil {
			return err
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// validateDisk checks resources.disk_bytes against the server's maximum.
func (m *Manager) validateDisk(n int64) error {
	switch {
	case n == 0:
		return nil
	case m.cfg.MaxDiskBytes == 0:
		return sandbox.FailedPrecondition(sandbox.ReasonInvalidSpec, "resources.disk_bytes is %d, but this server runs without disk limits (--disk-limits=off): leave it at 0", n)
	case n < minDiskBytes || n > m.cfg.MaxDiskBytes:
		return invalid("resources.disk_bytes %d is out of range: give 0 (the server's default) or %d MiB to this server's maximum of %d bytes (%d MiB)", n, minDiskBytes>>20, m.cfg.MaxDiskBytes, m.cfg.MaxDiskBytes>>20)
	}
	return nil
}
