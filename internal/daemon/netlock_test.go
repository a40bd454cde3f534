package daemon

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbx-run/sbx/internal/runtime/local"
)

func TestNetworkLockRefusesASecondServer(t *testing.T) {
	dir := t.TempDir()
	first, err := lockNetwork(dir, "sbxtlock1", "sbxtlock1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockNetwork(dir, "sbxtlock1", "other")
	if err == nil || !strings.Contains(err.Error(), "--network-bridge") || !strings.Contains(err.Error(), "--network none") {
		t.Fatalf("second lock of one bridge: %v", err)
	}
	_, err = lockNetwork(dir, "other", "sbxtlock1")
	if err == nil || !strings.Contains(err.Error(), `table "sbxtlock1"`) || !strings.Contains(err.Error(), "--network-table") {
		t.Fatalf("second lock of one table: %v", err)
	}
	// The failed attempts released what they had taken.
	l, err := lockNetwork(dir, "other", "other2")
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	first.Release()
	again, err := lockNetwork(dir, "sbxtlock1", "sbxtlock1")
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Release()
}

func TestCheckSubnetFree(t *testing.T) {
	err := checkSubnetFree(netip.MustParsePrefix("127.1.0.0/16"), "sbx-none")
	if err == nil || !strings.Contains(err.Error(), "overlaps") || !strings.Contains(err.Error(), "--network-subnet") {
		t.Fatalf("subnet inside loopback's 127/8: %v", err)
	}
	// 198.18/15 is reserved for benchmarks and never configured here.
	if err := checkSubnetFree(netip.MustParsePrefix("198.18.200.0/24"), "sbx-none"); err != nil {
		t.Fatal(err)
	}
}

func TestNetworkConfig(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil || c.Network != "bridge" {
		t.Fatalf("default network %q (%v), want bridge", c.Network, err)
	}
	nc, err := c.networkConfig("")
	if err != nil || nc.Bridge != "sbx0" || nc.Table != "sbx" || nc.Subnet.String() != "10.203.0.0/16" {
		t.Errorf("default network config: %+v, %v", nc, err)
	}
	if nc.StateDir != filepath.Join(c.DataDir, "network") {
		t.Errorf("state dir without a run root: %s", nc.StateDir)
	}
	if nc, _ := c.networkConfig("/run/sbx-sandboxes/x"); nc.StateDir != "/run/sbx-sandboxes/x/"+local.RunRootNetwork {
		t.Errorf("state dir with a run root: %s", nc.StateDir)
	}
	c.NetworkBridge, c.NetworkTable, c.NetworkSubnet = "sbxt1", "sbxt1", "10.99.0.0/24"
	if nc, err := c.networkConfig(""); err != nil || nc.Bridge != "sbxt1" || nc.Table != "sbxt1" || nc.Subnet.String() != "10.99.0.0/24" {
		t.Errorf("network config: %+v, %v", nc, err)
	}
	for _, bad := range []func(*Config){
		func(c *Config) { c.NetworkTable = "no spaces" },
		func(c *Config) { c.NetworkTable = strings.Repeat("t", 33) },
		func(c *Config) { c.NetworkBridge = "a-bridge-name-too-long" },
		func(c *Config) { c.Network = "host" },
	} {
		c := Default()
		bad(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
}
