package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeSelfSigned writes a self-signed certificate with serial and its key.
func writeSelfSigned(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "sbx"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func serialOf(t *testing.T, c *certFiles) int64 {
	t.Helper()
	crt, err := c.getCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	x, err := x509.ParseCertificate(crt.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return x.SerialNumber.Int64()
}

// TestCertFilesReload: a changed pair is served after the check interval;
// a pair that does not load keeps the last good one.
func TestCertFilesReload(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, cf, kf, 1)
	c, err := loadCertFiles(cf, kf, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	writeSelfSigned(t, cf, kf, 2)
	if got := serialOf(t, c); got != 1 {
		t.Errorf("within the check interval: serial %d, want 1", got)
	}
	c.checked = time.Time{}
	if got := serialOf(t, c); got != 2 {
		t.Errorf("after the check interval: serial %d, want 2", got)
	}
	if err := os.WriteFile(kf, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.checked = time.Time{}
	if got := serialOf(t, c); got != 2 {
		t.Errorf("with a broken key: serial %d, want the last good 2", got)
	}
	if _, err := loadCertFiles(cf, kf, slog.Default()); err == nil {
		t.Error("loading a broken pair at start worked")
	}
}

func TestValidateTLSPair(t *testing.T) {
	c := Default()
	c.TLSCertFile = "/etc/sbx/cert.pem"
	if err := c.validateTLS(); err == nil || !strings.Contains(err.Error(), "--tls-key") {
		t.Errorf("a cert without a key: %v", err)
	}
	c.TLSKeyFile = "/etc/sbx/key.pem"
	if err := c.validateTLS(); err != nil {
		t.Errorf("a pair: %v", err)
	}
}
