package daemon

import (
	"strings"
	"testing"
)

func TestValidateDisk(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string // "" is valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"off ignores sizes", func(c *Config) { c.DiskLimits, c.DefaultDiskBytes = "off", -1 }, ""},
		{"unknown mode", func(c *Config) { c.DiskLimits = "maybe" }, "disk limits"},
		{"default over max", func(c *Config) { c.DefaultDiskBytes = c.MaxDiskBytes + 1 }, "default disk"},
		{"tiny default", func(c *Config) { c.DefaultDiskBytes = 1 << 20 }, "default disk"},
		{"max too large", func(c *Config) { c.MaxDiskBytes = 1 << 50 }, "max disk"},
		{"small pool", func(c *Config) { c.DiskPoolBytes = 1 << 20 }, "disk pool size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mod(&c)
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
	c := Default()
	c.DiskLimits = "off"
	if d, m := c.diskDefaults(); d != 0 || m != 0 {
		t.Errorf("disk limits off: default %d, max %d; want none", d, m)
	}
}
