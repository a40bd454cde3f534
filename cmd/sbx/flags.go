package main

import (
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// Bounds on what the flags accept, so that a typo fails here with a clear
// message rather than as a huge request.
const (
	maxEnvVars = 256
	maxTags    = 64
)

// parseEnv turns -e values into a map: "K=V" sets K; a bare "K" copies K
// from this shell's environment (as docker does).
func parseEnv(vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	if len(vals) > maxEnvVars {
		return nil, usageErrorf("too many -e values (%d): at most %d", len(vals), maxEnvVars)
	}
	env := make(map[string]string, len(vals))
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if k == "" || strings.ContainsAny(k, " \t\n\x00") {
			return nil, usageErrorf("-e %q: want NAME=VALUE (or NAME to copy it from this shell)", v)
		}
		if !ok {
			val, ok = os.LookupEnv(k)
			if !ok {
				continue // docker skips unset names too
			}
		}
		env[k] = val
	}
	return env, nil
}

// parseBytes parses a memory size: plain bytes, or a number with a suffix
// k, m, g, t (powers of 1024; "b", "i" and "ib" are accepted after them).
func parseBytes(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "b")
	t = strings.TrimSuffix(t, "i")
	mult := float64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || f*mult > math.MaxInt64/2 {
		return 0, usageErrorf("memory %q: want a positive size such as 512m or 2g", s)
	}
	return int64(f * mult), nil
}

// parseCPUs turns "1.5" (cores) into thousandths of a core.
func parseCPUs(s string) (int64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f <= 0 || f > 1024 {
		return 0, usageErrorf("cpus %q: want a number of cores such as 0.5 or 2", s)
	}
	return int64(math.Ceil(f * 1000)), nil
}

// parseDuration accepts a Go duration ("10m", "1h30m") or whole seconds.
func parseDuration(flag, s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 && n < math.MaxInt64/int64(time.Second) {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, usageErrorf("--%s %q: want a positive duration such as 90s, 10m or 2h", flag, s)
	}
	return d, nil
}
