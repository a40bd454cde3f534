package server_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/lifecycle/lifecycletest"
	"github.com/sbx-run/sbx/internal/proxy"
	"github.com/sbx-run/sbx/internal/sandbox"
	"github.com/sbx-run/sbx/internal/server"
	"github.com/sbx-run/sbx/internal/store"
)

// noNetDialer stands in for a networked runtime in the API tests, which
// never reach a port (TestPublishedPorts does, with a real one).
type noNetDialer struct{}

func (noNetDialer) DialPort(context.Context, string, int) (net.Conn, error) {
	return nil, errors.New("no network in this test")
}
func (noNetDialer) Address(string) (netip.Addr, bool) { return netip.Addr{}, false }

// newPortAPIEnv is a server on the fake runtime whose proxy can publish
// ports; it returns clients of tenants a and b and the store.
func newPortAPIEnv(t *testing.T) (a, b sbxv1connect.SandboxServiceClient, st store.Store) {
	t.Helper()
	ctx := context.Background()
	m, st := startManager(t, lifecycletest.NewRuntime(), lifecycle.Config{})
	quiet := quietLog
	_, keyA, _ := auth.NewTenant(ctx, st, "a")
	_, keyB, _ := auth.NewTenant(ctx, st, "b")
	prx, err := proxy.New(proxy.Config{Sandboxes: m, Auth: auth.NewAuthenticator(st), Dialer: noNetDialer{},
		Domain: "sbx.example.com", APIURL: "https://api.example.com", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(prx.Wrap(server.New(server.Config{Manager: m, Auth: auth.NewAuthenticator(st), Logger: quiet, Proxy: prx})))
	t.Cleanup(srv.Close)
	client := func(key string) sbxv1connect.SandboxServiceClient {
		return sbxv1connect.NewSandboxServiceClient(&http.Client{Transport: bearer{key: key, next: http.DefaultTransport}}, srv.URL)
	}
	return client(keyA), client(keyB), st
}

func TestPortsNeedNetwork(t *testing.T) {
	e := newEnv(t, options{}) // no proxy: as serve --network none
	c := e.sandboxes(e.keyA)
	ctx := context.Background()
	_, err := c.Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{Ports: []*sbxv1.PortSpec{{Port: 8080}}}))
	wantCode(t, err, connect.CodeFailedPrecondition, sandbox.ReasonNetworkRequired)
	sb := running(t, c, &sbxv1.CreateSandboxRequest{})
	_, err = c.ExposePort(ctx, connect.NewRequest(&sbxv1.ExposePortRequest{SandboxId: sb.Id, Port: &sbxv1.PortSpec{Port: 8080}}))
	wantCode(t, err, connect.CodeFailedPrecondition, sandbox.ReasonNetworkRequired)
}

func TestCreatePortsValidation(t *testing.T) {
	a, _, _ := newPortAPIEnv(t)
	ctx := context.Background()
	ports := func(ps ...int32) []*sbxv1.PortSpec {
		var out []*sbxv1.PortSpec
		for _, p := range ps {
			out = append(out, &sbxv1.PortSpec{Port: p})
		}
		return out
	}
	many := make([]int32, 33)
	for i := range many {
		many[i] = int32(1000 + i)
	}
	for name, c := range map[string]struct {
		ports []*sbxv1.PortSpec
		field string
	}{
		"zero":      {ports(80, 443, 0), "ports[2].port"},
		"too high":  {ports(65536), "ports[0].port"},
		"negative":  {ports(80, -1), "ports[1].port"},
		"duplicate": {ports(80, 80), "ports[1].port"},
		"too many":  {ports(many...), "at most 32"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := a.Create(ctx, connect.NewRequest(&sbxv1.CreateSandboxRequest{Ports: c.ports}))
			ce := wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonInvalidSpec)
			if !strings.Contains(ce.Message(), c.field) {
				t.Fatalf("error %q does not name %s", ce.Message(), c.field)
			}
		})
	}
}

func TestExposePortAPI(t *testing.T) {
	a, b, st := newPortAPIEnv(t)
	ctx := context.Background()
	sb := running(t, a, &sbxv1.CreateSandboxRequest{Ports: []*sbxv1.PortSpec{{Port: 8080}, {Port: 3000, Public: true}}})
	if len(sb.Ports) != 2 || sb.Ports[0].Url != "https://8080-"+sb.Id+".sbx.example.com/" ||
		sb.Ports[0].PathUrl != "https://api.example.com/proxy/"+sb.Id+"/8080/" ||
		!sb.Ports[1].Public || !strings.HasPrefix(sb.Ports[1].Url, "https://3000-"+sb.Id+"-") ||
		!strings.HasPrefix(sb.Ports[1].PathUrl, "https://api.example.com/proxy/"+sb.Id+"/3000-") {
		t.Fatalf("ports on create: %v", sb.Ports)
	}
	expose := func(c sbxv1connect.SandboxServiceClient, id string, port int32, public bool) (*sbxv1.ExposedPort, error) {
		r, err := c.ExposePort(ctx, connect.NewRequest(&sbxv1.ExposePortRequest{SandboxId: id, Port: &sbxv1.PortSpec{Port: port, Public: public}}))
		if err != nil {
			return nil, err
		}
		return r.Msg.Port, nil
	}

	p1, err := expose(a, sb.Id, 9000, true)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := expose(a, sb.Id, 9000, true)
	if err != nil || p2.Url != p1.Url {
		t.Fatalf("not idempotent: %v then %v (%v)", p1, p2, err)
	}
	p3, _ := expose(a, sb.Id, 9000, false)
	if p3.Public || p3.Url != "https://9000-"+sb.Id+".sbx.example.com/" {
		t.Fatalf("going private: %v", p3)
	}
	p4, _ := expose(a, sb.Id, 9000, true)
	if p4.Url == p1.Url {
		t.Fatal("going public again reused the old token")
	}

	// The ports are in the stored record, so they outlive this server.
	rec, err := st.GetSandbox(ctx, "", sb.Id)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Ports) != 3 || rec.Ports[2].Port != 9000 || len(rec.Ports[2].Token) != lifecycle.TokenLen || !strings.Contains(p4.Url, rec.Ports[2].Token) {
		t.Fatalf("stored ports %+v", rec.Ports)
	}
	g, _ := a.Get(ctx, connect.NewRequest(&sbxv1.GetSandboxRequest{Id: sb.Id}))
	if len(g.Msg.Sandbox.Ports) != 3 || g.Msg.Sandbox.Ports[2].Url != p4.Url {
		t.Fatalf("Get: %v", g.Msg.Sandbox.Ports)
	}

	for _, port := range []int32{0, -1, 65536} {
		_, err := expose(a, sb.Id, port, false)
		wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonInvalidSpec)
	}
	_, err = a.ExposePort(ctx, connect.NewRequest(&sbxv1.ExposePortRequest{SandboxId: sb.Id}))
	wantCode(t, err, connect.CodeInvalidArgument, sandbox.ReasonInvalidSpec)
	_, err = expose(b, sb.Id, 8081, false)
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonSandboxNotFound)
	_, err = b.UnexposePort(ctx, connect.NewRequest(&sbxv1.UnexposePortRequest{SandboxId: sb.Id, Port: 8080}))
	wantCode(t, err, connect.CodeNotFound, sandbox.ReasonSandboxNotFound)

	// At most 32 per sandbox.
	for p := int32(10000); ; p++ {
		_, err := expose(a, sb.Id, p, false)
		if err != nil {
			wantCode(t, err, connect.CodeFailedPrecondition, sandbox.ReasonTooManyPorts)
			break
		}
		if p > 10100 {
			t.Fatal("no limit on ports")
		}
	}
	g, _ = a.Get(ctx, connect.NewRequest(&sbxv1.GetSandboxRequest{Id: sb.Id}))
	if n := len(g.Msg.Sandbox.Ports); n != lifecycle.MaxPorts {
		t.Fatalf("%d ports after the limit", n)
	}

	// Unexpose: unknown ports are fine; known ones go.
	for _, port := range []int32{8080, 8080, 4444} {
		if _, err := a.UnexposePort(ctx, connect.NewRequest(&sbxv1.UnexposePortRequest{SandboxId: sb.Id, Port: port})); err != nil {
			t.Fatalf("UnexposePort %d: %v", port, err)
		}
	}
	g, _ = a.Get(ctx, connect.NewRequest(&sbxv1.GetSandboxRequest{Id: sb.Id}))
	for _, p := range g.Msg.Sandbox.Ports {
		if p.Port == 8080 {
			t.Fatal("8080 still published")
		}
	}

	// A stopped sandbox publishes nothing new.
	if _, err := a.Stop(ctx, connect.NewRequest(&sbxv1.StopSandboxRequest{Id: sb.Id})); err != nil {
		t.Fatal(err)
	}
	a.Wait(ctx, connect.NewRequest(&sbxv1.WaitSandboxRequest{Id: sb.Id, Until: sbxv1.WaitCondition_WAIT_CONDITION_TERMINAL}))
	_, err = expose(a, sb.Id, 8080, false)
	wantCode(t, err, connect.CodeFailedPrecondition, sandbox.ReasonSandboxNotRunning)
}
