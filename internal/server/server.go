// Package server serves sbx's public API (api/sbx/v1) over Connect, gRPC and
// gRPC-Web on one HTTP handler. Handlers are one file per RPC: decode,
// validate, call the lifecycle manager, convert; errors are mapped to
// Connect codes in one place (errors.go). Generated wire types stop here.
package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"connectrpc.com/connect"

	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
	"github.com/sbx-run/sbx/internal/auth"
	"github.com/sbx-run/sbx/internal/lifecycle"
	"github.com/sbx-run/sbx/internal/proxy"
	"github.com/sbx-run/sbx/internal/secrets"
	"github.com/sbx-run/sbx/internal/store"
)

// DefaultExecOutputLimit is the default and maximum output (stdout plus
// stderr) forwarded per exec; beyond it output is dropped and the exit event
// says truncated.
const DefaultExecOutputLimit = 64 << 20

// maxMessageBytes bounds one request message: a Create carrying 10 MiB of
// mounted files fits, with room for the rest.
const maxMessageBytes = 16 << 20

// Config is what the API handler needs.
type Config struct {
	// Manager runs sandboxes and sessions (required).
	Manager *lifecycle.Manager
	// Auth resolves API keys to tenants (required).
	Auth *auth.Authenticator
	// Logger receives request errors (slog.Default()).
	Logger *slog.Logger
	// ExecOutputLimit caps each exec's forwarded output (DefaultExecOutputLimit).
	ExecOutputLimit int64
	// Interceptors run inside auth and error mapping (e.g. metrics).
	Interceptors []connect.Interceptor
	// Calls bounds each tenant's calls in flight; share one between New
	// and NewBulk. nil: NewCallLimit(0).
	Calls *CallLimit

	// Images, when set, is served as the ImageService.
	Images ImageStore
	// ImageAdmins are the tenant ids that may change the image cache every
	// tenant shares (Remove, Import, GC); Pull and List are open to all.
	ImageAdmins []string
	// ImportDir is where Import spools tarballs (required with Images; a
	// dir on the same disk as the image store, e.g. <data-dir>/tmp).
	ImportDir string
	// MaxImportBytes bounds one imported tarball (DefaultMaxImportBytes).
	MaxImportBytes int64

	// Secrets, when set, is served as the SecretService (the tenants'
	// secret stores); the lifecycle manager resolves through the same one.
	Secrets *secrets.Manager

	// Store, when set with Auth over the same store, is served as the
	// AdminService (admin.go): tenants and API keys.
	Store store.Store
	// Admins are the tenant ids that may manage tenants and every tenant's
	// keys; they are image admins too.
	Admins []string

	// Proxy publishes sandbox ports; nil (or one without a dialer) means
	// ports cannot be published (NETWORK_REQUIRED). It is not routed here:
	// wrap the listener's handler with Proxy.Wrap.
	Proxy *proxy.Proxy
}

// deps is what every handler shares.
type deps struct {
	m           *lifecycle.Manager
	log         *slog.Logger
	outputLimit int64
	ports       *proxy.Proxy
}

// New returns the API handler: the sandbox, session and pool services, the
// image service when cfg.Images is set, plus GET /healthz.
func New(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ExecOutputLimit <= 0 {
		cfg.ExecOutputLimit = DefaultExecOutputLimit
	}
	d := &deps{m: cfg.Manager, log: cfg.Logger, outputLimit: cfg.ExecOutputLimit, ports: cfg.Proxy}
	if cfg.Calls == nil {
		cfg.Calls = NewCallLimit(0)
	}
	// The call limit is innermost, so that metrics count refused calls.
	interceptors := append([]connect.Interceptor{errorInterceptor(cfg.Logger), authInterceptor(cfg.Auth)}, cfg.Interceptors...)
	interceptors = append(interceptors, callLimitInterceptor(cfg.Calls))
	opts := []connect.HandlerOption{
		connect.WithInterceptors(interceptors...),
		connect.WithReadMaxBytes(maxMessageBytes),
		connect.WithCodec(fileCodec),
		// Compress only large messages for clients that ask for it: gzip of
		// small exec and file messages costs more latency than it saves.
		connect.WithCompressMinBytes(64 << 10),
	}
	mux := http.NewServeMux()
	mux.Handle(sbxv1connect.NewSandboxServiceHandler(&sandboxService{d}, opts...))
	mux.Handle(sbxv1connect.NewSessionServiceHandler(&sessionService{d}, opts...))
	mux.Handle(sbxv1connect.NewPoolServiceHandler(&poolService{d}, opts...))
	if cfg.Secrets != nil {
		mux.Handle(sbxv1connect.NewSecretServiceHandler(&secretService{deps: d, secrets: cfg.Secrets}, opts...))
	}
	if cfg.Store != nil {
		as := &adminService{deps: d, st: cfg.Store, auth: cfg.Auth, admins: map[string]bool{}}
		for _, t := range cfg.Admins {
			as.admins[t] = true
		}
		mux.Handle(sbxv1connect.NewAdminServiceHandler(as, opts...))
	}
	if cfg.Images != nil {
		if cfg.MaxImportBytes <= 0 {
			cfg.MaxImportBytes = DefaultMaxImportBytes
		}
		is := &imageService{deps: d, images: cfg.Images, admins: map[string]bool{}, importDir: cfg.ImportDir, maxImport: cfg.MaxImportBytes}
		if is.importDir == "" {
			is.importDir = os.TempDir()
		}
		for _, t := range cfg.ImageAdmins {
			is.admins[t] = true
		}
		for _, t := range cfg.Admins { // admins are image admins too
			is.admins[t] = true
		}
		mux.Handle(sbxv1connect.NewImageServiceHandler(is, opts...))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	})
	return authFirst(cfg.Auth, cfg.Logger, mux)
}

// IdleTimeout is how long the API server keeps a client's idle keep-alive
// connection: past the SDKs' own idle limits (Go 90 s, Python 30 s), so a
// connection they reuse is not closed under them, while one a client
// forgot is not kept for ever.
const IdleTimeout = 2 * time.Minute

// NewHTTPServer returns an http.Server for h on addr that speaks HTTP/1.1
// and HTTP/2 over plain TCP (h2c), so gRPC clients work without TLS.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{Addr: addr, Handler: h, Protocols: &p, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: IdleTimeout}
}

// sandboxService implements sbxv1connect.SandboxServiceHandler.
type sandboxService struct{ *deps }

// sessionService implements sbxv1connect.SessionServiceHandler.
type sessionService struct{ *deps }

var (
	_ sbxv1connect.SandboxServiceHandler = (*sandboxService)(nil)
	_ sbxv1connect.SessionServiceHandler = (*sessionService)(nil)
	_ sbxv1connect.ImageServiceHandler   = (*imageService)(nil)
)

// tenant returns the caller's tenant; the auth interceptor guarantees one.
func tenant(ctx context.Context) string {
	id, _ := auth.TenantFrom(ctx)
	return id
}
