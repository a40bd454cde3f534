package sbx

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"connectrpc.com/connect"

	"github.com/sbx-run/sbx/gen/sbx/v1/sbxv1connect"
)

// DefaultURL is where a Client looks for the server when neither an option,
// SBX_URL nor the credentials file names one. `sbx serve` listens here by
// default.
const DefaultURL = "http://127.0.0.1:7420"

// The environment variables a Client reads.
const (
	EnvURL       = "SBX_URL"
	EnvAPIKey    = "SBX_API_KEY"
	EnvConfigDir = "SBX_CONFIG_DIR"
)

// DefaultCredentialsPath returns the file where a local `sbx serve` writes
// the URL and API key it created, and where clients read them:
// $SBX_CONFIG_DIR/credentials, else $XDG_CONFIG_HOME/sbx/credentials, else
// ~/.config/sbx/credentials.
func DefaultCredentialsPath() string {
	if d := os.Getenv(EnvConfigDir); d != "" {
		return filepath.Join(d, "credentials")
	}
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "sbx", "credentials")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".config", "sbx", "credentials")
}

// Credentials are what the credentials file holds, as JSON:
// {"url": "http://127.0.0.1:7420", "unix_socket": "/var/lib/sbx/api.sock",
// "api_key": "..."}. UnixSocket is the same server's API on a Unix socket,
// which a client whose URL comes from the file uses when it can reach it
// (see unixsock.go).
type Credentials struct {
	URL        string `json:"url,omitempty"`
	UnixSocket string `json:"unix_socket,omitempty"`
	APIKey     string `json:"api_key,omitempty"`
}

// maxCredentialsSize bounds the credentials file we are willing to read.
const maxCredentialsSize = 64 << 10

// ReadCredentials reads a credentials file. A missing file returns an error
// that wraps os.ErrNotExist.
func ReadCredentials(path string) (Credentials, error) {
	var c Credentials
	f, err := os.Open(path)
	if err != nil {
		return c, err
	}
	defer f.Close()
	dec := json.NewDecoder(http.MaxBytesReader(nil, f, maxCredentialsSize))
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("credentials file %s is not valid JSON (%v): remove it and restart `sbx serve`, or set %s", path, err, EnvAPIKey)
	}
	return c, nil
}

// WriteCredentials writes c to path with mode 0600, creating its directory
// (0700), atomically: a reader never sees a half-written file.
func WriteCredentials(path string, c Credentials) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".credentials-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Client talks to one sbx server. It is safe for concurrent use.
type Client struct {
	// url is the base URL of requests (http://localhost over a Unix
	// socket); display is the server's URL as URL returns it.
	url, display string
	// socket is the API's Unix socket the client connects to, if any.
	socket    string
	apiKey    string
	sandboxes sbxv1connect.SandboxServiceClient
	sessions  sbxv1connect.SessionServiceClient
	images    sbxv1connect.ImageServiceClient
	pools     sbxv1connect.PoolServiceClient
	secrets   sbxv1connect.SecretServiceClient
	admin     sbxv1connect.AdminServiceClient
	// createRetries is how often Run retries a Create refused with
	// CREATE_QUEUE_FULL (WithCreateRetries).
	createRetries int
	// bulk is the bulk endpoint's client over TCP when the client has a
	// TLS config of its own (WithCAFile); nil uses bulkHTTP.
	bulk *http.Client
}

// ClientOption configures NewClient.
type ClientOption func(*clientConfig)

type clientConfig struct {
	url, apiKey     string
	credentialsPath string
	httpClient      connect.HTTPClient
	grpc            bool
	createRetries   *int
	caFile          string
}

// DefaultCreateRetries is how many times Run retries, after the delay the
// server gives, a Create that the server's admission control refused with
// CREATE_QUEUE_FULL; the caller's context bounds the wait too.
const DefaultCreateRetries = 20

// WithCreateRetries sets how many times Run retries a Create refused with
// CREATE_QUEUE_FULL (default DefaultCreateRetries; 0 returns the refusal at
// once, e.g. to measure or to schedule retries yourself). Such a Create
// stored nothing, so a retry is safe without a request id.
func WithCreateRetries(n int) ClientOption {
	return func(c *clientConfig) { c.createRetries = &n }
}

// WithURL sets the server's base URL (e.g. "http://127.0.0.1:7420"), or
// its Unix socket as "unix:///var/lib/sbx/api.sock".
func WithURL(url string) ClientOption { return func(c *clientConfig) { c.url = url } }

// WithAPIKey sets the API key sent as a Bearer token.
func WithAPIKey(key string) ClientOption { return func(c *clientConfig) { c.apiKey = key } }

// WithHTTPClient sets the HTTP client (e.g. for TLS settings). It must not
// set a whole-request timeout, since exec and log streams last long.
func WithHTTPClient(hc *http.Client) ClientOption {
	return func(c *clientConfig) { c.httpClient = hc }
}

// WithCredentialsFile reads the URL and key from path (instead of
// DefaultCredentialsPath) when options and environment leave them unset.
func WithCredentialsFile(path string) ClientOption {
	return func(c *clientConfig) { c.credentialsPath = path }
}

// WithGRPC talks gRPC (over HTTP/2; h2c for http:// URLs) instead of the
// Connect protocol over HTTP/1.1. A client set with WithHTTPClient must then
// speak HTTP/2 itself.
func WithGRPC() ClientOption { return func(c *clientConfig) { c.grpc = true } }

// NewClient returns a client configured by opts; what they leave unset comes
// from SBX_URL and SBX_API_KEY, then from the credentials file, then
// DefaultURL (and no key).
func NewClient(opts ...ClientOption) (*Client, error) {
	var cfg clientConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.url == "" {
		cfg.url = os.Getenv(EnvURL)
	}
	if cfg.apiKey == "" {
		cfg.apiKey = os.Getenv(EnvAPIKey)
	}
	if cfg.caFile == "" {
		cfg.caFile = os.Getenv(EnvCAFile)
	}
	// The socket the credentials file names, used when the URL comes
	// from the file too (unixsock.go).
	var fileSocket string
	if cfg.url == "" || cfg.apiKey == "" {
		path := cfg.credentialsPath
		if path == "" {
			path = DefaultCredentialsPath()
		}
		creds, err := ReadCredentials(path)
		switch {
		case err == nil:
			// A key from the file belongs to the file's server: use it only
			// for that server.
			if cfg.url == "" {
				cfg.url = creds.URL
				fileSocket = creds.UnixSocket
			}
			if cfg.apiKey == "" && (creds.URL == "" || sameURL(creds.URL, cfg.url) || isSocketURL(cfg.url, creds.UnixSocket)) {
				cfg.apiKey = creds.APIKey
			}
		case errors.Is(err, os.ErrNotExist):
		default:
			return nil, errorf(ErrInvalidArgument, "INVALID_CREDENTIALS", "%v", err)
		}
	}
	if cfg.url == "" {
		cfg.url = DefaultURL
	}
	socket, isUnix, err := parseUnixURL(cfg.url)
	if err != nil {
		return nil, err
	}
	switch {
	case isUnix && cfg.httpClient != nil:
		return nil, errorf(ErrInvalidArgument, "INVALID_URL", "server URL %q: a Unix-socket URL takes the SDK's own HTTP client; with WithHTTPClient, dial the socket in its transport and use %s", cfg.url, unixBaseURL)
	case isUnix:
	case !strings.HasPrefix(cfg.url, "http://") && !strings.HasPrefix(cfg.url, "https://"):
		return nil, errorf(ErrInvalidArgument, "INVALID_URL", "server URL %q must start with http://, https:// or unix://", cfg.url)
	case fileSocket != "" && cfg.httpClient == nil && strings.HasPrefix(cfg.url, "http://") && reachableSocket(fileSocket):
		// The file's own server, on its socket (unixsock.go).
		socket = filepath.Clean(fileSocket)
	}
	if socket != "" {
		cfg.url = unixScheme + socket
	}
	display := strings.TrimRight(cfg.url, "/")
	if socket != "" {
		cfg.url = unixBaseURL
	}
	cfg.url = strings.TrimRight(cfg.url, "/")
	var tlsCfg *tls.Config
	if cfg.caFile != "" && cfg.httpClient == nil {
		if tlsCfg, err = loadCAFile(cfg.caFile); err != nil {
			return nil, err
		}
	}
	if cfg.httpClient == nil {
		cfg.httpClient = defaultHTTPClient(cfg.grpc, socket, tlsCfg)
	}
	var bulk *http.Client
	if tlsCfg != nil {
		bulk = bulkTLSClient(tlsCfg)
	}
	copts := []connect.ClientOption{
		connect.WithInterceptors(&authInterceptor{key: cfg.apiKey}),
		// No gzip: sandbox traffic is mostly small messages on fast links,
		// where compressing costs more latency than it saves.
		connect.WithAcceptCompression("gzip", nil, nil),
		connect.WithCodec(fileCodec),
	}
	if cfg.grpc {
		copts = append(copts, connect.WithGRPC())
	}
	retries := DefaultCreateRetries
	if cfg.createRetries != nil {
		retries = max(*cfg.createRetries, 0)
	}
	return &Client{
		url:           cfg.url,
		display:       display,
		socket:        socket,
		apiKey:        cfg.apiKey,
		createRetries: retries,
		bulk:          bulk,
		sandboxes:     sbxv1connect.NewSandboxServiceClient(cfg.httpClient, cfg.url, copts...),
		sessions:      sbxv1connect.NewSessionServiceClient(cfg.httpClient, cfg.url, copts...),
		images:        sbxv1connect.NewImageServiceClient(cfg.httpClient, cfg.url, copts...),
		pools:         sbxv1connect.NewPoolServiceClient(cfg.httpClient, cfg.url, copts...),
		secrets:       sbxv1connect.NewSecretServiceClient(cfg.httpClient, cfg.url, copts...),
		admin:         sbxv1connect.NewAdminServiceClient(cfg.httpClient, cfg.url, copts...),
	}, nil
}

// URL returns the server's base URL: unix:///... when the client uses
// the API's Unix socket (given so, or named by the credentials file).
func (c *Client) URL() string { return c.display }

// Transport says how the client reaches the server: "unix" (the API's Unix
// socket) or "tcp".
func (c *Client) Transport() string {
	if c.socket != "" {
		return "unix"
	}
	return "tcp"
}

func sameURL(a, b string) bool { return strings.TrimRight(a, "/") == strings.TrimRight(b, "/") }

// defaultHTTPClient keeps enough idle connections for many concurrent
// streams (the Connect protocol over HTTP/1.1 uses one connection per
// in-flight stream) and has no overall timeout, since streams last long.
// For gRPC it speaks HTTP/2, over plain TCP (h2c) for http:// URLs, as
// `sbx serve` does. With socket set, every connection goes to that Unix
// socket.
func defaultHTTPClient(http2Only bool, socket string, tlsCfg *tls.Config) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if tlsCfg != nil {
		t.TLSClientConfig = tlsCfg
	}
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128
	if socket != "" {
		t.Proxy = nil
		t.DialContext = unixDial(socket)
	}
	if http2Only {
		var p http.Protocols
		p.SetHTTP2(true)
		p.SetUnencryptedHTTP2(true)
		t.Protocols = &p
	}
	return &http.Client{Transport: inMemoryBodies{t}}
}

// authInterceptor adds the API key to every call.
type authInterceptor struct{ key string }

func (a *authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if a.key != "" {
			req.Header().Set("Authorization", "Bearer "+a.key)
		}
		return next(ctx, req)
	}
}

func (a *authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if a.key != "" {
			conn.RequestHeader().Set("Authorization", "Bearer "+a.key)
		}
		return conn
	}
}

func (a *authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

var (
	defaultOnce   sync.Once
	defaultClient *Client
	defaultErr    error
)

// DefaultClient returns the client that the package-level functions (Run,
// Get, List, ...) use, configured from the environment once.
func DefaultClient() (*Client, error) {
	defaultOnce.Do(func() { defaultClient, defaultErr = NewClient() })
	return defaultClient, defaultErr
}

// Run starts a sandbox with the DefaultClient; see Client.Run.
func Run(ctx context.Context, opts ...RunOption) (*Sandbox, error) {
	c, err := DefaultClient()
	if err != nil {
		return nil, err
	}
	return c.Run(ctx, opts...)
}
