package dns

import "strings"

// Allowed reports whether name (a query name, with or without the final
// dot) matches one of patterns: "example.com" matches exactly that name,
// "*.example.com" any name strictly below example.com. Case does not matter.
// Only plain host names can match: a name with any character other than
// letters, digits, '-', '_' and '.' (in particular an escaped dot, which
// would make "a\.example.com" one label) or with an empty label matches
// nothing.
func Allowed(patterns []string, name string) bool {
	n, ok := hostName(name)
	if !ok {
		return false
	}
	for _, p := range patterns {
		p = strings.ToLower(strings.TrimSuffix(p, "."))
		if suffix, wild := strings.CutPrefix(p, "*"); wild {
			if strings.HasPrefix(suffix, ".") && len(n) > len(suffix) && strings.HasSuffix(n, suffix) {
				return true
			}
			continue
		}
		if n == p {
			return true
		}
	}
	return false
}

// hostName returns name in lower case without its final dot, if it is a
// plain host name.
func hostName(name string) (string, bool) {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return "", false
	}
	b := []byte(name)
	label := 0
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + ('a' - 'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.':
			if label == 0 {
				return "", false
			}
			label = -1
		default:
			return "", false
		}
		if label++; label > 63 {
			return "", false
		}
	}
	if label == 0 { // "example.com.." ends in an empty label
		return "", false
	}
	return string(b), true
}
