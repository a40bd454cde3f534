package daemon

import (
	"net/netip"
	"strings"
	"testing"
)

func TestNetworkDNSConfig(t *testing.T) {
	c := Default()
	c.NetworkSubnet = "10.77.0.0/16"
	nc, err := c.networkConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if !nc.NameResolver || len(nc.DNS) != 1 || nc.DNS[0] != netip.MustParseAddr("10.77.0.1") {
		t.Errorf("default: DNS %v, NameResolver %v; want sbx's resolver on the gateway 10.77.0.1", nc.DNS, nc.NameResolver)
	}
	c.NetworkDNS = []string{"192.0.2.53"}
	if nc, _ = c.networkConfig(""); nc.NameResolver || len(nc.DNS) != 1 || nc.DNS[0] != netip.MustParseAddr("192.0.2.53") {
		t.Errorf("--network-dns: DNS %v, NameResolver %v; want the named resolver and no name enforcement", nc.DNS, nc.NameResolver)
	}
	if m, err := c.startResolver(nil, nil); m != nil || err != nil {
		t.Errorf("startResolver without a network = %v, %v", m, err)
	}

	for _, tc := range []struct {
		dns, upstream []string
		wantErr       string
	}{
		{upstream: []string{"127.0.0.53", "[2001:db8::53]:53", "192.0.2.1:5353"}},
		{upstream: []string{"dns.example.com"}, wantErr: "not an IP address"},
		{upstream: []string{"192.0.2.1:0"}, wantErr: "not an IP address"},
		{upstream: make([]string, 9), wantErr: "at most 8"},
		{dns: []string{"192.0.2.53"}, upstream: []string{"192.0.2.1"}, wantErr: "drop one of"},
	} {
		c := Default()
		c.NetworkDNS, c.NetworkDNSUpstream = tc.dns, tc.upstream
		err := c.validateNetwork()
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("dns %v upstream %v: %v, want %q", tc.dns, tc.upstream, err, tc.wantErr)
		}
	}
}
