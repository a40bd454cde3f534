package sbx

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
)

// EnvCAFile names a PEM file of the certificate authorities a Client
// trusts for an https:// server, in place of the system's (for a server
// whose certificate a private CA signed, or a self-signed one).
const EnvCAFile = "SBX_CA_FILE"

// WithCAFile makes the client trust the certificate authorities in the PEM
// file at path for an https:// server, instead of the system's (default:
// $SBX_CA_FILE). It applies to the SDK's own HTTP client only: a client
// given WithHTTPClient sets its TLS in its own transport.
func WithCAFile(path string) ClientOption { return func(c *clientConfig) { c.caFile = path } }

// loadCAFile reads a PEM bundle of CA certificates.
func loadCAFile(path string) (*tls.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, errorf(ErrInvalidArgument, "INVALID_CA_FILE", "CA file (WithCAFile or %s): %v", EnvCAFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errorf(ErrInvalidArgument, "INVALID_CA_FILE", "CA file %s (WithCAFile or %s) holds no PEM certificate", path, EnvCAFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// bulkTLSClient is the bulk endpoint's client for a TLS config of the
// caller's (bulkHTTP trusts the system's CAs).
func bulkTLSClient(cfg *tls.Config) *http.Client {
	c := newBulkHTTP("")
	c.Transport.(*http.Transport).TLSClientConfig = cfg
	return c
}
