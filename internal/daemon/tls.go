package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// certCheckInterval is how often a TLS handshake may look at the
// certificate files for a rotation.
const certCheckInterval = 5 * time.Second

// certFiles serves the certificate of a PEM cert/key pair and reloads it
// when either file changes, so that an operator (or cert-manager) rotates
// it without restarting the server and its streams. A pair that fails to
// load keeps the last good certificate in use, with a warning.
type certFiles struct {
	cert, key string
	log       *slog.Logger

	mu      sync.Mutex
	cur     *tls.Certificate
	stamp   string // the files' mtimes and sizes when cur was loaded
	checked time.Time
}

// loadCertFiles loads the pair once, failing if it cannot.
func loadCertFiles(certFile, keyFile string, log *slog.Logger) (*certFiles, error) {
	c := &certFiles{cert: certFile, key: keyFile, log: log}
	stamp, err := c.fileStamp()
	if err != nil {
		return nil, err
	}
	crt, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	c.cur, c.stamp, c.checked = &crt, stamp, time.Now()
	return c, nil
}

// fileStamp identifies the current contents of both files.
func (c *certFiles) fileStamp() (string, error) {
	var s string
	for _, p := range []string{c.cert, c.key} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("TLS file: %w", err)
		}
		s += fmt.Sprintf("%d.%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return s, nil
}

// getCertificate is tls.Config.GetCertificate.
func (c *certFiles) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) < certCheckInterval {
		return c.cur, nil
	}
	c.checked = time.Now()
	stamp, err := c.fileStamp()
	if err != nil || stamp == c.stamp {
		if err != nil {
			c.log.Warn("TLS certificate files unreadable; serving the last good certificate", "err", err)
		}
		return c.cur, nil
	}
	crt, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		// Often a rotation caught between writing the cert and the key:
		// the next check tries again.
		c.log.Warn("TLS certificate files changed but do not load; serving the last good certificate", "cert", c.cert, "key", c.key, "err", err)
		return c.cur, nil
	}
	c.cur, c.stamp = &crt, stamp
	c.log.Info("TLS certificate reloaded", "cert", c.cert)
	return c.cur, nil
}

// tlsConfig is the API listener's TLS: HTTP/2 (gRPC needs it) and
// HTTP/1.1 by ALPN, TLS 1.2 at least.
func (c *certFiles) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: c.getCertificate,
	}
}

// validateTLS checks that the TLS files come as a pair.
func (c *Config) validateTLS() error {
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("TLS needs both a certificate and its key: give --tls-cert and --tls-key together")
	}
	return nil
}

// apiListener puts TLS on ln when the config has a certificate and
// returns the listener with its URL scheme; without one it warns if ln
// is reachable from other hosts, where API keys would travel in clear.
func (c *Config) apiListener(ln net.Listener, log *slog.Logger) (net.Listener, string, error) {
	if c.TLSCertFile == "" {
		if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
			log.Warn("the API listens beyond loopback without TLS: API keys travel in clear; give --tls-cert and --tls-key, or put a TLS proxy in front", "listen", ln.Addr().String())
		}
		return ln, "http", nil
	}
	certs, err := loadCertFiles(c.TLSCertFile, c.TLSKeyFile, log)
	if err != nil {
		return nil, "", err
	}
	return tls.NewListener(ln, certs.tlsConfig()), "https", nil
}
