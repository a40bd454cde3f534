package daemon

import (
	"net"
	"testing"
)

func TestPublicURL(t *testing.T) {
	for _, c := range []struct {
		public, listen, want string
		tls                  bool
	}{
		{"", "127.0.0.1:7420", "http://127.0.0.1:7420", false},
		{"", "0.0.0.0:7420", "http://localhost:7420", false},
		{"", "[::]:7420", "http://localhost:7420", false},
		{"", "[::1]:7420", "http://[::1]:7420", false},
		{"https://sbx.example.com/", "0.0.0.0:7420", "https://sbx.example.com", false},
		{"", "127.0.0.1:7420", "https://127.0.0.1:7420", true},
	} {
		c2 := Config{PublicURL: c.public}
		if c.tls {
			c2.TLSCertFile, c2.TLSKeyFile = "cert.pem", "key.pem"
		}
		addr, err := net.ResolveTCPAddr("tcp", c.listen)
		if err != nil {
			t.Fatal(err)
		}
		if got := c2.publicURL(addr); got != c.want {
			t.Errorf("publicURL(%q, %q) = %q, want %q", c.public, c.listen, got, c.want)
		}
	}
}

func TestValidateProxy(t *testing.T) {
	good := []Config{{}, {ProxyDomain: "sbx.example.com"}, {ProxyDomain: "localhost", PublicURL: "http://localhost:7420"}}
	for _, c := range good {
		if err := c.validateProxy(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	if c := (Config{}); c.validateProxy() != nil || c.ProxyDomain != "localhost" {
		t.Errorf("default domain %q", c.ProxyDomain)
	}
	bad := []Config{{ProxyDomain: "a/b"}, {ProxyDomain: "*.example.com"}, {ProxyDomain: ".example.com"},
		{PublicURL: "localhost:7420"}, {PublicURL: "ftp://x"}, {PublicURL: "http://x/?a=1"}, {PublicURL: "http://u:p@x"}}
	for _, c := range bad {
		if err := c.validateProxy(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
