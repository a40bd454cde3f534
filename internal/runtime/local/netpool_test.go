package local

import (
	"strings"
	"testing"
)

// TestNetnsCleanParsing: what the counters of a kept namespace must say.
func TestNetnsCleanParsing(t *testing.T) {
	const dev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0:      54       1    0    0    0     0          0         0        %s       0    0    0    0     0       0          0
`
	for _, c := range []struct {
		name string
		dev  string
		want bool
	}{
		{"NothingSent", strings.Replace(dev, "%s", "0", 1), true}, // received floods count for nothing
		{"Sent", strings.Replace(dev, "%s", "42", 1), false},
		{"NoLinks", "Inter-|\n face |\n", false},
		{"Truncated", "  eth0: 0 0 0\n", false},
	} {
		if got := noneSent([]byte(c.dev)); got != c.want {
			t.Errorf("%s: noneSent = %v, want %v", c.name, got, c.want)
		}
	}
	const sockstat = "sockets: used %s\nTCP: inuse 0 orphan 3 tw %s alloc 10 mem 4\nUDP: inuse 0 mem 0\n"
	for _, c := range []struct {
		used, tw string
		want     bool
	}{{"0", "0", true}, {"1", "0", false}, {"0", "2", false}} {
		if got := noSockets([]byte(strings.Replace(strings.Replace(sockstat, "%s", c.used, 1), "%s", c.tw, 1))); got != c.want {
			t.Errorf("used %s tw %s: noSockets = %v, want %v", c.used, c.tw, got, c.want)
		}
	}
	if noSockets([]byte("TCP: inuse 0\n")) {
		t.Error("noSockets without a sockets line: true")
	}
}
