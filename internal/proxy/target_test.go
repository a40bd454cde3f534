package proxy

import (
	"strings"
	"testing"
)

const tok = "abcdefghijklmnopqrstuvwxyz" // 26 characters of [a-z2-7]

func TestHostLabel(t *testing.T) {
	for _, c := range []struct {
		host, label string
		ok          bool
	}{
		{"8080-sb-x.localhost", "8080-sb-x", true},
		{"8080-sb-x.localhost:7420", "8080-sb-x", true},
		{"8080-SB-X.LOCALHOST.", "8080-sb-x", true},
		{"8080-sb-x.localhost.:7420", "8080-sb-x", true},
		{"localhost", "", false},
		{"localhost:7420", "", false},
		{".localhost", "", false},
		{"127.0.0.1:7420", "", false},
		{"[::1]:7420", "", false},
		{"x.notlocalhost", "", false},
		{"evil.com/.localhost", "evil.com/", true}, // parseLabel rejects it
		{"", "", false},
	} {
		label, ok := hostLabel(c.host, "localhost", "localhost")
		if ok != c.ok || label != c.label {
			t.Errorf("hostLabel(%q) = %q, %v; want %q, %v", c.host, label, ok, c.label, c.ok)
		}
	}
}

func TestParseLabel(t *testing.T) {
	for _, c := range []struct {
		label     string
		id, token string
		port      int
		ok        bool
	}{
		{"8080-sb-abc", "sb-abc", "", 8080, true},
		{"1-sb-abc-" + tok, "sb-abc", tok, 1, true},
		{"65535-sb-abc", "sb-abc", "", 65535, true},
		// Not a token (wrong length or alphabet): part of the id.
		{"80-sb-abc-" + tok[:25], "sb-abc-" + tok[:25], "", 80, true},
		{"80-sb-abc-" + strings.Replace(tok, "a", "1", 1), "sb-abc-" + strings.Replace(tok, "a", "1", 1), "", 80, true},
		{"0-sb-abc", "", "", 0, false},
		{"65536-sb-abc", "", "", 0, false},
		{"080-sb-abc", "", "", 0, false},
		{"+80-sb-abc", "", "", 0, false},
		{"-80-sb-abc", "", "", 0, false},
		{"99999999999999999999-sb-abc", "", "", 0, false},
		{"8080", "", "", 0, false},
		{"8080-", "", "", 0, false},
		{"8080--sb", "", "", 0, false},
		{"8080-" + tok, tok, "", 8080, true},
		{"8080--" + tok, "", "", 0, false},
		{"8080-sb.abc", "", "", 0, false},
		{"8080-sb_abc%2f", "", "", 0, false},
		{"8080-sb/abc", "", "", 0, false},
		{"8080-" + strings.Repeat("a", 60), "", "", 0, false},
		{"8080-sb\x00", "", "", 0, false},
		{"8080-sb abc", "", "", 0, false},
		{"8080-évil", "", "", 0, false},
		{"evil.com/", "", "", 0, false},
	} {
		got, ok := parseLabel(c.label)
		if ok != c.ok || (ok && (got.ID != c.id || got.Token != c.token || got.Port != c.port)) {
			t.Errorf("parseLabel(%q) = %+v, %v; want id %q token %q port %d ok %v", c.label, got, ok, c.id, c.token, c.port, c.ok)
		}
	}
}

func TestParsePath(t *testing.T) {
	for _, c := range []struct {
		path         string
		id, token    string
		port         int
		rest, prefix string
		ok           bool
	}{
		{"/proxy/sb-a/8080/", "sb-a", "", 8080, "/", "/proxy/sb-a/8080", true},
		{"/proxy/sb-a/8080", "sb-a", "", 8080, "", "/proxy/sb-a/8080", true},
		{"/proxy/sb-a/8080/x/y%2Fz?q", "sb-a", "", 8080, "/x/y%2Fz?q", "/proxy/sb-a/8080", true},
		{"/proxy/sb-a/8080-" + tok + "/index.html", "sb-a", tok, 8080, "/index.html", "/proxy/sb-a/8080-" + tok, true},
		{"/proxy/sb-a/8080/../../v1", "sb-a", "", 8080, "/../../v1", "/proxy/sb-a/8080", true},
		{"/proxy/sb-a/8080-/", "", "", 0, "", "", false},
		{"/proxy/sb-a/8080-" + tok[:10] + "/", "", "", 0, "", "", false},
		{"/proxy/sb-a/8080-" + strings.ToUpper(tok) + "/", "", "", 0, "", "", false},
		{"/proxy/../8080/", "", "", 0, "", "", false},
		{"/proxy/./8080/", "", "", 0, "", "", false},
		{"/proxy/sb%2Da/8080/", "", "", 0, "", "", false},
		{"/proxy//8080/", "", "", 0, "", "", false},
		{"/proxy/sb-a//", "", "", 0, "", "", false},
		{"/proxy/sb-a/0/", "", "", 0, "", "", false},
		{"/proxy/sb-a/70000/", "", "", 0, "", "", false},
		{"/proxy/sb-a/80a/", "", "", 0, "", "", false},
		{"/proxy/sb-a", "", "", 0, "", "", false},
		{"/proxy/", "", "", 0, "", "", false},
		{"/proxyx/sb-a/80/", "", "", 0, "", "", false},
		{"/proxy/" + strings.Repeat("a", 200) + "/80/", "", "", 0, "", "", false},
	} {
		got, ok := parsePath(c.path)
		if ok != c.ok || (ok && (got.ID != c.id || got.Token != c.token || got.Port != c.port || got.Rest != c.rest || got.Prefix != c.prefix)) {
			t.Errorf("parsePath(%q) = %+v, %v; want %q %q %d %q %q %v", c.path, got, ok, c.id, c.token, c.port, c.rest, c.prefix, c.ok)
		}
	}
}

func TestParseTCPPath(t *testing.T) {
	for _, c := range []struct {
		path string
		id   string
		port int
		ok   bool
	}{
		{"/proxy-tcp/sb-a/5432", "sb-a", 5432, true},
		{"/proxy-tcp/sb-a/5432/", "sb-a", 5432, true},
		{"/proxy-tcp/sb-a/5432/x", "", 0, false},
		{"/proxy-tcp/sb-a/", "", 0, false},
		{"/proxy-tcp/../5432", "", 0, false},
		{"/proxy-tcp/sb-a/-1", "", 0, false},
		{"/proxy-tcp//5432", "", 0, false},
	} {
		id, port, ok := parseTCPPath(c.path)
		if ok != c.ok || (ok && (id != c.id || port != c.port)) {
			t.Errorf("parseTCPPath(%q) = %q %d %v; want %q %d %v", c.path, id, port, ok, c.id, c.port, c.ok)
		}
	}
}

func TestURLs(t *testing.T) {
	u, err := newURLs("http://localhost:7420/", "LocalHost.")
	if err != nil {
		t.Fatal(err)
	}
	if got := u.hostURL("sb-a", 8080, ""); got != "http://8080-sb-a.localhost:7420/" {
		t.Errorf("private host URL %q", got)
	}
	if got := u.hostURL("sb-a", 8080, tok); got != "http://8080-sb-a-"+tok+".localhost:7420/" {
		t.Errorf("public host URL %q", got)
	}
	if got := u.pathURL("sb-a", 8080, tok); got != "http://localhost:7420/proxy/sb-a/8080-"+tok+"/" {
		t.Errorf("public path URL %q", got)
	}
	u, err = newURLs("https://sbx.example.com/api", "sbx.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got := u.hostURL("sb-a", 80, ""); got != "https://80-sb-a.sbx.example.com/" {
		t.Errorf("host URL without port %q", got)
	}
	if got := u.pathURL("sb-a", 80, ""); got != "https://sbx.example.com/api/proxy/sb-a/80/" {
		t.Errorf("path URL under a prefix %q", got)
	}
	// What the URLs say parses back to the same target.
	lbl, ok := hostLabel("8080-sb-abc-"+tok+".sbx.example.com", "sbx.example.com", "api.sbx.example.com")
	if tg, ok2 := parseLabel(lbl); !ok || !ok2 || tg.ID != "sb-abc" || tg.Token != tok {
		t.Errorf("round trip: %+v", tg)
	}
	if _, ok := hostLabel("API.sbx.example.com:443", "sbx.example.com", "api.sbx.example.com"); ok {
		t.Error("the API's own host was routed to the proxy")
	}
	for _, bad := range []string{"", "ftp://x", "localhost:7420", "http://", "http://u:p@x", "http://x/?q=1"} {
		if _, err := newURLs(bad, "localhost"); err == nil {
			t.Errorf("newURLs(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"", "a/b", "a:1", "a b"} {
		if _, err := newURLs("http://x", bad); err == nil {
			t.Errorf("domain %q accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("/proxy/sb-a/8080-" + tok + "/x")
	f.Add("8080-sb-a-" + tok)
	f.Fuzz(func(t *testing.T, s string) {
		if tg, ok := parsePath(s); ok && (!validID(tg.ID) || tg.Port < 1 || tg.Port > 65535 || !strings.HasPrefix(s, tg.Prefix)) {
			t.Fatalf("parsePath(%q) = %+v", s, tg)
		}
		if tg, ok := parseLabel(s); ok && (!validID(tg.ID) || strings.ContainsAny(tg.ID, "./_") || tg.Port < 1 || tg.Port > 65535) {
			t.Fatalf("parseLabel(%q) = %+v", s, tg)
		}
	})
}
