package daemon

import (
	"strings"
	"testing"
)

// TestNetworkBridgeLeavesRoomForOverflow: the bridge name must leave room
// for the names of its overflow bridges ("<bridge>.b<n>"), which depends
// on how many the subnet can need; and no server can be configured with
// a name of another's overflow links (they have a '.'), so the bridge lock
// keeps two servers apart on those too.
func TestNetworkBridgeLeavesRoomForOverflow(t *testing.T) {
	for _, tc := range []struct {
		bridge, subnet string
		ok             bool
	}{
		{"sbx0", "", true},
		{"sbx01234567", "", true},              // 11: "sbx01234567.b65" for the default /16
		{"sbx012345678", "", false},            // 12
		{"sbx012345678", "10.99.0.0/24", true}, // one overflow bridge: ".b1"
		{"sbx01234567", "10.0.0.0/8", false},   // up to ".b511"
		{"sbx0.b1", "", false},
		{"sbx0.t1", "", false},
		{"sbx0.u1", "", false},
	} {
		c := Default()
		c.NetworkBridge, c.NetworkSubnet = tc.bridge, tc.subnet
		err := c.Validate()
		if tc.ok != (err == nil) {
			t.Errorf("bridge %q, subnet %q: %v", tc.bridge, tc.subnet, err)
		}
		if err != nil && !strings.Contains(err.Error(), "network bridge") {
			t.Errorf("bridge %q: error does not name the field: %v", tc.bridge, err)
		}
	}
}
