package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// tcpProtocol is the Upgrade token of the raw TCP endpoint.
const tcpProtocol = "sbx-tcp"

// serveTCP is GET /proxy-tcp/<id>/<port> with "Connection: Upgrade" and
// "Upgrade: sbx-tcp": after the caller's API key is checked against the
// sandbox's owner, it answers 101 and then carries raw bytes both ways
// (with half-close), for port-forward. The port need not be published.
func (p *Proxy) serveTCP(w http.ResponseWriter, r *http.Request) {
	id, port, ok := parseTCPPath(r.URL.EscapedPath())
	if !ok {
		notFound(w)
		return
	}
	tenant, ok := p.authenticate(w, r, false)
	if !ok {
		return
	}
	if r.Method != http.MethodGet || r.ProtoMajor != 1 || !headerHasToken(r.Header, "Connection", "upgrade") ||
		!strings.EqualFold(strings.TrimSpace(r.Header.Get("Upgrade")), tcpProtocol) {
		text(w, http.StatusBadRequest, "port-forward needs an HTTP/1.1 GET with \"Connection: Upgrade\" and \"Upgrade: "+tcpProtocol+"\"")
		return
	}
	sb, ok := p.lookup(w, r, id)
	if !ok {
		return
	}
	if sb.TenantID != tenant {
		notFound(w)
		return
	}
	if !p.ready(w, sb) {
		return
	}
	up, err := p.cfg.Dialer.DialPort(r.Context(), id, port)
	if err != nil {
		p.upstreamError(w, r, err)
		return
	}
	p.conns.addTunnel(id, up)
	defer func() {
		p.conns.removeTunnel(up)
		up.Close()
	}()
	down, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		text(w, http.StatusInternalServerError, "this connection cannot be upgraded: "+err.Error())
		return
	}
	defer down.Close()
	_ = down.SetDeadline(time.Time{})
	if _, err := io.WriteString(down, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+tcpProtocol+"\r\n\r\n"); err != nil {
		return
	}
	pipe(down, brw.Reader, up)
}

// pipe copies both ways until both directions ended; an EOF on one side
// half-closes the other, so request-then-response protocols work.
func pipe(down net.Conn, downR *bufio.Reader, up net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	half := func(dst net.Conn, src io.Reader) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil {
			// A reset or a closed side: nothing more can flow either way.
			down.Close()
			up.Close()
			return
		}
		closeWrite(dst)
	}
	// The reader may hold bytes the client sent right after its request;
	// past those, copying conn to conn lets the kernel splice.
	if n := downR.Buffered(); n > 0 {
		b, _ := downR.Peek(n)
		if _, err := up.Write(b); err != nil {
			return
		}
	}
	go half(up, down)
	go half(down, up)
	wg.Wait()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// headerHasToken reports whether the comma-separated header name holds
// token (case-insensitively).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
