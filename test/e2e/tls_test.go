package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-run/sbx"
	"github.com/sbx-run/sbx/internal/testenv"
)

// testCert is a CA and a server certificate for 127.0.0.1 that it signed,
// in PEM files.
type testCert struct {
	dir                       string
	caFile, certFile, keyFile string
	ca                        *x509.Certificate
	caKey                     *ecdsa.PrivateKey
	pool                      *x509.CertPool
}

func newTestCert(t *testing.T) *testCert {
	t.Helper()
	c := &testCert{dir: t.TempDir()}
	c.caFile, c.certFile, c.keyFile = filepath.Join(c.dir, "ca.pem"), filepath.Join(c.dir, "cert.pem"), filepath.Join(c.dir, "key.pem")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sbx test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if c.ca, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	c.caKey = key
	c.pool = x509.NewCertPool()
	c.pool.AddCert(c.ca)
	writePEM(t, c.caFile, "CERTIFICATE", der)
	c.issue(t, 2)
	return c
}

// issue writes a server certificate for 127.0.0.1 with serial, signed by
// the CA, over the cert and key files.
func (c *testCert) issue(t *testing.T, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.ca, &key.PublicKey, c.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Key first, then the cert: the server reloads once both changed.
	writePEM(t, c.keyFile, "EC PRIVATE KEY", kder)
	writePEM(t, c.certFile, "CERTIFICATE", der)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// httpClient trusts the test CA.
func (c *testCert) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.pool}}}
}

// serverSerial returns the serial of the certificate the server at addr
// presents.
func (c *testCert) serverSerial(t *testing.T, addr string) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: c.pool})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestTLS serves the API over TLS: the SDK (Connect and gRPC, RPCs and
// the bulk file endpoint) and the CLI work with the CA, a client without
// it or speaking plain HTTP is refused, the credentials file names the
// https URL, and a rotated certificate is served without a restart.
func TestTLS(t *testing.T) {
	cert := newTestCert(t)
	s := startServerWith(t, serverOptions{tls: cert})
	ctx := ctxT(t, 3*time.Minute)

	creds, err := sbx.ReadCredentials(filepath.Join(s.cfgDir, "credentials"))
	if err != nil || !strings.HasPrefix(creds.URL, "https://") {
		t.Errorf("credentials file URL %q (%v), want https://", creds.URL, err)
	}

	for _, grpc := range []bool{false, true} {
		opts := []sbx.ClientOption{sbx.WithURL(s.url()), sbx.WithAPIKey(s.key), sbx.WithCAFile(cert.caFile)}
		if grpc {
			opts = append(opts, sbx.WithGRPC())
		}
		c, err := sbx.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := c.Run(ctx, sbx.Image("busybox"))
		if err != nil {
			t.Fatalf("grpc=%v: Run over TLS: %v", grpc, err)
		}
		p, err := sb.Exec(ctx, []string{"echo", "over tls"})
		if err != nil {
			t.Fatal(err)
		}
		if res, err := p.Result(); err != nil || string(res.Stdout) != "over tls\n" {
			t.Errorf("grpc=%v: exec over TLS: %+v %v", grpc, res, err)
		}
		// 2 MiB goes by the bulk endpoint.
		data := bytes.Repeat([]byte("0123456789abcdef"), 128<<10)
		if err := sb.WriteFile(ctx, "/big", data, 0o644); err != nil {
			t.Fatalf("grpc=%v: WriteFile of 2 MiB over TLS: %v", grpc, err)
		}
		if got, err := sb.ReadFile(ctx, "/big"); err != nil || !bytes.Equal(got, data) {
			t.Errorf("grpc=%v: ReadFile of 2 MiB over TLS: %d bytes, %v", grpc, len(got), err)
		}
		if err := sb.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Without the CA, or in plain HTTP: refused.
	noCA, err := sbx.NewClient(sbx.WithURL(s.url()), sbx.WithAPIKey(s.key))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noCA.List(ctx, sbx.ListOptions{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client that does not trust the CA: %v, want a certificate error", err)
	}
	plain, err := sbx.NewClient(sbx.WithURL("http://"+s.addr), sbx.WithAPIKey(s.key))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.List(ctx, sbx.ListOptions{}); err == nil {
		t.Error("plain HTTP to the TLS listener worked")
	}
	if _, err := sbx.NewClient(sbx.WithURL(s.url()), sbx.WithCAFile(filepath.Join(cert.dir, "missing.pem"))); sbx.ReasonOf(err) != "INVALID_CA_FILE" {
		t.Errorf("a missing CA file: %v, want INVALID_CA_FILE", err)
	}

	// The CLI, with --ca-file and with SBX_CA_FILE.
	bin := testenv.Binary(t, "./cmd/sbx")
	for _, withFlag := range []bool{true, false} {
		args := []string{"--url", s.url(), "ls"}
		env := append(os.Environ(), "SBX_API_KEY="+s.key, sbx.EnvConfigDir+"="+t.TempDir())
		if withFlag {
			args = append([]string{"--ca-file", cert.caFile}, args...)
		} else {
			env = append(env, sbx.EnvCAFile+"="+cert.caFile)
		}
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sbx %v over TLS: %v\n%s", args, err, out)
		}
	}

	// Rotation: the server picks up new files within its check interval.
	if got := cert.serverSerial(t, s.addr); got != 2 {
		t.Fatalf("serial %d before the rotation, want 2", got)
	}
	cert.issue(t, 3)
	rotated := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if cert.serverSerial(t, s.addr) == 3 {
			rotated = true
			break
		}
	}
	if !rotated {
		t.Fatalf("the rotated certificate was not served within 30 s:\n%s", tail(s.log(), 2000))
	}
	c := s.client()
	if _, err := c.List(context.Background(), sbx.ListOptions{}); err != nil {
		t.Errorf("List after the rotation: %v", err)
	}
}
