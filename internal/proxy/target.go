package proxy

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/sbx-run/sbx/internal/lifecycle"
)

// Path prefixes of the path form and of the raw TCP endpoint.
const (
	pathPrefix = "/proxy/"
	tcpPrefix  = "/proxy-tcp/"
)

// maxLabelLen is the longest DNS label; a host-form label must fit in one.
const maxLabelLen = 63

// target is what a proxied request's Host or path names: a sandbox port,
// and for a public URL its token.
type target struct {
	ID    string
	Port  int
	Token string // "" for the private form
	// Rest is the escaped path to forward ("/" at least); Prefix is what
	// the path form stripped ("/proxy/<id>/<port>"), "" for the host form.
	Rest   string
	Prefix string
}

// hostLabel returns the first label of host when host is a subdomain of
// domain other than apiHost (host may carry a port; case and a final dot
// are ignored). ok is false for every other host, which the API serves.
func hostLabel(host, domain, apiHost string) (label string, ok bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == apiHost {
		return "", false
	}
	label, ok = strings.CutSuffix(host, "."+domain)
	if !ok || label == "" {
		return "", false
	}
	return label, true
}

// parseLabel parses a host-form label: "<port>-<id>" (private) or
// "<port>-<id>-<token>" (public). A final dash-separated part that looks
// like a token is one; server-made ids ("sb-" and 16 characters) never end
// in such a part.
func parseLabel(label string) (target, bool) {
	if len(label) > maxLabelLen {
		return target{}, false
	}
	for _, c := range label {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return target{}, false // not a DNS label as hostLabel makes them
		}
	}
	portStr, rest, ok := strings.Cut(label, "-")
	if !ok {
		return target{}, false
	}
	port, ok := parsePort(portStr)
	if !ok {
		return target{}, false
	}
	t := target{ID: rest, Port: port, Rest: "/"}
	if i := strings.LastIndexByte(rest, '-'); i > 0 && isToken(rest[i+1:]) {
		t.ID, t.Token = rest[:i], rest[i+1:]
	}
	if !validID(t.ID) {
		return target{}, false
	}
	return t, true
}

// parsePath parses a path-form request's escaped path:
// /proxy/<id>/<port>[-<token>][/rest]. Nothing is unescaped or cleaned:
// the id and port parts allow no escapes or dots, and the rest goes to the
// sandbox as sent.
func parsePath(escaped string) (target, bool) {
	p, ok := strings.CutPrefix(escaped, pathPrefix)
	if !ok {
		return target{}, false
	}
	id, p, ok := strings.Cut(p, "/")
	if !ok || !validID(id) {
		return target{}, false
	}
	portPart, rest, hasRest := strings.Cut(p, "/")
	portStr, token, hasToken := strings.Cut(portPart, "-")
	port, ok := parsePort(portStr)
	if !ok || (hasToken && !isToken(token)) {
		return target{}, false
	}
	t := target{ID: id, Port: port, Token: token, Rest: "/" + rest, Prefix: pathPrefix + id + "/" + portPart}
	if !hasRest {
		t.Rest = ""
	}
	return t, true
}

// parseTCPPath parses /proxy-tcp/<id>/<port> (a final slash is allowed).
func parseTCPPath(escaped string) (id string, port int, ok bool) {
	p, ok := strings.CutPrefix(escaped, tcpPrefix)
	if !ok {
		return "", 0, false
	}
	p = strings.TrimSuffix(p, "/")
	id, portStr, ok := strings.Cut(p, "/")
	if !ok || !validID(id) {
		return "", 0, false
	}
	port, ok = parsePort(portStr)
	return id, port, ok
}

// parsePort accepts 1-65535 written canonically (no sign, no leading zero).
func parsePort(s string) (int, bool) {
	if len(s) == 0 || len(s) > 5 || s[0] == '0' {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 1 && n <= 65535
}

// isToken reports whether s has the shape of a public port's token.
func isToken(s string) bool {
	if len(s) != lifecycle.TokenLen {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// validID reports whether id can be a sandbox id.
func validID(id string) bool { return lifecycle.ValidateID("sandbox id", id) == nil }

// urls builds the URLs of published ports from the API's URL as users
// reach it and the base domain.
type urls struct {
	scheme, hostPort, api, domain string
	// apiHost is the API's host name, which is never a sandbox's even
	// when it is under domain (api.sbx.example.com with sbx.example.com).
	apiHost string
}

func newURLs(apiURL, domain string) (urls, error) {
	u, err := url.Parse(apiURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return urls{}, fmt.Errorf("public URL %q is not an http(s) URL such as http://localhost:7420", apiURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return urls{}, fmt.Errorf("public URL %q must not have a query, fragment or user", apiURL)
	}
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	if domain == "" || strings.ContainsAny(domain, "/:@ ") {
		return urls{}, fmt.Errorf("proxy domain %q is not a DNS name such as localhost or sbx.example.com", domain)
	}
	port := ""
	if p := u.Port(); p != "" {
		port = ":" + p
	}
	return urls{scheme: u.Scheme, hostPort: port, api: strings.TrimSuffix(u.String(), "/"), domain: domain,
		apiHost: strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")}, nil
}

// hostURL is http://<port>-<id>[-<token>].<domain>[:<api port>]/.
func (u urls) hostURL(id string, port int, token string) string {
	label := strconv.Itoa(port) + "-" + id
	if token != "" {
		label += "-" + token
	}
	return u.scheme + "://" + label + "." + u.domain + u.hostPort + "/"
}

// pathURL is <api>/proxy/<id>/<port>[-<token>]/.
func (u urls) pathURL(id string, port int, token string) string {
	p := strconv.Itoa(port)
	if token != "" {
		p += "-" + token
	}
	return u.api + pathPrefix + id + "/" + p + "/"
}
