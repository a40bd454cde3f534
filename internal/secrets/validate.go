package secrets

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// Bounds on secrets.
const (
	// MaxNameLen bounds a secret's name and an env_var.
	MaxNameLen = 128
	// MaxValueBytes bounds one value.
	MaxValueBytes = 64 << 10
	// MaxPerTenant bounds the secrets one tenant stores.
	MaxPerTenant = 1000
	// MaxPerSandbox bounds the secrets one sandbox (or session) names.
	MaxPerSandbox = 100
)

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reserved are environment variables sbx or the sandbox's own working
// depends on: a secret silently replacing PATH or HOME breaks every
// command, and LD_* would load code into every process.
var reserved = map[string]bool{"PATH": true, "HOME": true, "HOSTNAME": true, "PWD": true}

// Reserved reports whether env var v is one a secret may not be injected as.
func Reserved(v string) bool {
	return reserved[v] || strings.HasPrefix(v, "LD_") || strings.HasPrefix(v, "SBX_")
}

func invalid(format string, args ...any) error {
	return sandbox.InvalidArgument(sandbox.ReasonInvalidSpec, format, args...)
}

// ValidateName checks a secret's name (field names it in the message).
func ValidateName(field, name string) error {
	switch {
	case name == "":
		return invalid("%s is empty: name the secret like an environment variable, e.g. HF_TOKEN", field)
	case len(name) > MaxNameLen || !nameRE.MatchString(name):
		return invalid("%s %q is invalid: use letters, digits and _, not starting with a digit, at most %d characters", field, truncate(name, 80), MaxNameLen)
	}
	return nil
}

// ValidateValue checks a secret's value.
func ValidateValue(value string) error {
	switch {
	case len(value) > MaxValueBytes:
		return invalid("value is %d bytes: at most %d (64 KiB) are allowed", len(value), MaxValueBytes)
	case strings.ContainsRune(value, 0):
		return invalid("value contains a NUL byte, which an environment variable cannot hold")
	}
	return nil
}

// ValidateRefs checks the secrets a sandbox or session names (field is
// "secrets" or "defaults.secrets"): bounds, names, env vars, no env var
// twice, none reserved, and none also set in env.
func ValidateRefs(field string, refs []sandbox.SecretRef, env map[string]string) error {
	if len(refs) > MaxPerSandbox {
		return invalid("%s has %d entries: at most %d are allowed", field, len(refs), MaxPerSandbox)
	}
	seen := make(map[string]int, len(refs))
	for i, r := range refs {
		if err := ValidateName(fieldf(field, i, "name"), r.Name); err != nil {
			return err
		}
		v := r.Var()
		if r.EnvVar != "" {
			if err := ValidateName(fieldf(field, i, "env_var"), r.EnvVar); err != nil {
				return err
			}
		}
		if Reserved(v) {
			return invalid("%s injects %s, which sbx reserves (PATH, HOME, HOSTNAME, PWD, LD_*, SBX_*): choose another env_var", fieldf(field, i, "env_var"), v)
		}
		if j, ok := seen[v]; ok {
			return invalid("%s and %s[%d] both inject %s: give one of them another env_var", fieldf(field, i, "env_var"), field, j, v)
		}
		seen[v] = i
		if _, ok := env[v]; ok {
			return invalid("%s injects %s, which env sets too: drop one of them", fieldf(field, i, "env_var"), v)
		}
	}
	return nil
}

func fieldf(field string, i int, sub string) string {
	return field + "[" + strconv.Itoa(i) + "]." + sub
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
