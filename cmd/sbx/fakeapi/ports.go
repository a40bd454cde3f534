package fakeapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	sbxv1 "github.com/sbx-run/sbx/gen/sbx/v1"
)

// Published ports. The fake's URLs follow the real server's shapes on the
// domain "localhost" with a fixed token; every sandbox port is an echo
// server for /proxy-tcp/ (what it receives, it sends back).

const fakeToken = "tok"

func (f *Server) exposed(id string, p *sbxv1.PortSpec) *sbxv1.ExposedPort {
	host := fmt.Sprintf("%d-%s", p.GetPort(), id)
	path := strconv.Itoa(int(p.GetPort()))
	if p.GetPublic() {
		host += "-" + fakeToken
		path += "-" + fakeToken
	}
	return &sbxv1.ExposedPort{
		Port: p.GetPort(), Public: p.GetPublic(),
		Url:     "http://" + host + ".localhost/",
		PathUrl: f.url + "/proxy/" + id + "/" + path + "/",
	}
}

// setPort adds or replaces a port of w, keeping them sorted by port.
func setPort(w *sbxv1.Sandbox, e *sbxv1.ExposedPort) {
	out := make([]*sbxv1.ExposedPort, 0, len(w.Ports)+1)
	done := false
	for _, q := range w.Ports {
		switch {
		case q.GetPort() == e.GetPort():
			continue
		case !done && q.GetPort() > e.GetPort():
			out = append(out, e)
			done = true
		}
		out = append(out, q)
	}
	if !done {
		out = append(out, e)
	}
	w.Ports = out
}

func badPort(p int32) error {
	if p < 1 || p > 65535 {
		return fakeErr(connect.CodeInvalidArgument, "INVALID_ARGUMENT", fmt.Sprintf("port.port: %d is out of range 1-65535", p), 0)
	}
	return nil
}

// ExposePort implements SandboxService.ExposePort.
func (f *Server) ExposePort(_ context.Context, req *connect.Request[sbxv1.ExposePortRequest]) (*connect.Response[sbxv1.ExposePortResponse], error) {
	if err := badPort(req.Msg.GetPort().GetPort()); err != nil {
		return nil, err
	}
	sb, err := f.running(req.Msg.GetSandboxId())
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.exposed(sb.w.Id, req.Msg.GetPort())
	setPort(sb.w, e)
	return connect.NewResponse(&sbxv1.ExposePortResponse{Port: e}), nil
}

// UnexposePort implements SandboxService.UnexposePort.
func (f *Server) UnexposePort(_ context.Context, req *connect.Request[sbxv1.UnexposePortRequest]) (*connect.Response[sbxv1.UnexposePortResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, err := f.get(req.Msg.GetSandboxId())
	if err != nil {
		return nil, err
	}
	var keep []*sbxv1.ExposedPort
	for _, q := range sb.w.Ports {
		if q.GetPort() != req.Msg.GetPort() {
			keep = append(keep, q)
		}
	}
	sb.w.Ports = keep
	return connect.NewResponse(&sbxv1.UnexposePortResponse{}), nil
}

// proxyTCP serves GET /proxy-tcp/<id>/<port>: the key is required, the
// sandbox must exist and run, then the connection echoes.
func (f *Server) proxyTCP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.apiKey {
		http.Error(w, "unknown API key", http.StatusUnauthorized)
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "sbx-tcp") {
		http.Error(w, "want Upgrade: sbx-tcp", http.StatusBadRequest)
		return
	}
	id, port := r.PathValue("id"), r.PathValue("port")
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		http.Error(w, "bad port", http.StatusBadRequest)
		return
	}
	if _, err := f.running(id); err != nil {
		w.Header().Set("Sbx-Reason", "SANDBOX_NOT_FOUND")
		http.Error(w, fmt.Sprintf("sandbox %q is not running", id), http.StatusNotFound)
		return
	}
	f.mu.Lock()
	f.dials++
	f.mu.Unlock()
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: sbx-tcp\r\n\r\n")
	rw.Flush()
	io.Copy(conn, rw) // echo until the client closes its side
}

// Dials returns how many /proxy-tcp/ upgrades succeeded.
func (f *Server) Dials() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dials
}
