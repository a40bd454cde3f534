package daemon

import (
	"net"
	"testing"
	"time"
)

// TestLimitConnections checks that past the bound a new connection is not
// served until one of the served ones closes.
func TestLimitConnections(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := limitConnections(raw, 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first := <-accepted
	<-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was served while two were open")
	case <-time.After(200 * time.Millisecond):
	}
	first.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the third connection was not served after one closed")
	}
}

func TestConnectionLimitDefault(t *testing.T) {
	if got := connectionLimit(7); got != 7 {
		t.Errorf("configured 7: %d", got)
	}
	if got := connectionLimit(0); got < 1024 {
		t.Errorf("default %d, want at least 1024", got)
	}
}
