package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:7420" || c.DataDir != "/var/lib/sbx" || c.Runtime != "crun" || !c.LocalMode {
		t.Errorf("defaults: %+v", c)
	}
}

func TestLoadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sbx.yaml")
	os.WriteFile(p, []byte(`
listen: 0.0.0.0:9000
dataDir: /srv/sbx
registryMirrors: [docker.io=http://127.0.0.1:5000]
insecureRegistries: [registry.local:5000]
runtime: runc
maxLifetime: 2h
defaultLifetime: 90
retention: 1h
localMode: false
registryAuth:
  ghcr.io: {username: u, password: p}
`), 0o600)
	c := Default()
	if err := c.LoadFile(p); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:9000" || c.DataDir != "/srv/sbx" || c.Runtime != "runc" || c.LocalMode ||
		time.Duration(c.MaxLifetime) != 2*time.Hour || time.Duration(c.DefaultLifetime) != 90*time.Second ||
		c.RegistryAuth["ghcr.io"].Password != "p" || c.DefaultPids != 4096 {
		t.Errorf("loaded: %+v", c)
	}
	ic, err := c.imageConfig()
	if err != nil || ic.Mirrors["docker.io"][0] != "http://127.0.0.1:5000" || ic.Root != "/srv/sbx/images" {
		t.Errorf("image config: %+v, %v", ic, err)
	}
}

func TestLoadFileRejectsTyposAndJunk(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"typo":     "listne: 1.2.3.4:5\n",
		"notyaml":  "listen: [unclosed\n",
		"duration": "retention: forever\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		c := Default()
		if err := c.LoadFile(p); err == nil {
			t.Errorf("%s: loaded without error", name)
		}
	}
	c := Default()
	if err := c.LoadFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestValidate(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"listen":        func(c *Config) { c.Listen = "7420" },
		"relative dir":  func(c *Config) { c.DataDir = "data" },
		"long dir":      func(c *Config) { c.DataDir = "/" + strings.Repeat("d", 60) },
		"runtime":       func(c *Config) { c.Runtime = "docker" },
		"mirror":        func(c *Config) { c.RegistryMirrors = []string{"docker.io"} },
		"mirror scheme": func(c *Config) { c.RegistryMirrors = []string{"docker.io=ftp://x"} },
		"insecure":      func(c *Config) { c.InsecureRegistries = []string{"http://x/y"} },
		"dsn":           func(c *Config) { c.StoreDSN = "mysql://x" },
		"lifetime":      func(c *Config) { c.DefaultLifetime = Duration(48 * time.Hour) },
		"memory":        func(c *Config) { c.DefaultMemoryBytes = 1 },
		"quota":         func(c *Config) { c.MaxSandboxesPerTenant = 0 },
		"lease":         func(c *Config) { c.DefaultLease = Duration(2 * time.Hour) },
		"log level":     func(c *Config) { c.LogLevel = "loud" },
		"import size":   func(c *Config) { c.MaxImportBytes = 10 },
		"image size":    func(c *Config) { c.MaxImageBytes = 10 },
		"calls":         func(c *Config) { c.MaxCallsPerTenant = 0 },
		"connections":   func(c *Config) { c.MaxConnections = -1 },
		"image admin":   func(c *Config) { c.ImageAdmins = []string{"../x"} },
	} {
		c := Default()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, c)
		}
	}
}

func TestImageAdmins(t *testing.T) {
	c := Default()
	c.ImageAdmins = []string{"tn-ops"}
	if got := c.imageAdmins(); !slices.Equal(got, []string{"tn-ops", LocalTenant}) {
		t.Fatalf("local mode: image admins %v", got)
	}
	c.LocalMode = false
	if got := c.imageAdmins(); !slices.Equal(got, []string{"tn-ops"}) {
		t.Fatalf("without local mode: image admins %v", got)
	}
	c.ImageAdmins = nil
	if got := c.imageAdmins(); len(got) != 0 {
		t.Fatalf("no admins configured: %v", got)
	}
}
