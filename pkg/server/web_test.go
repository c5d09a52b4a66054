package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"

	"github.com/leakwatch/leakwatch/pkg/view"
)

// The credentials of the tests' web configs.
const (
	testUser     = "prometheus"
	testPassword = "correct horse battery staple"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files into one directory.
type testPKI struct {
	dir  string
	pool *x509.CertPool
	// client is the client certificate and key, for mutual TLS.
	client tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "leakwatch test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(serial int64, name string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	serverDER, serverKey := issue(2, "leakwatch", x509.ExtKeyUsageServerAuth)
	clientDER, clientKey := issue(3, "scraper", x509.ExtKeyUsageClientAuth)

	writePEM(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", caDER)
	writePEM(t, filepath.Join(dir, "server.crt"), "CERTIFICATE", serverDER)
	writePEM(t, filepath.Join(dir, "server.key"), "PRIVATE KEY", marshalKey(t, serverKey))

	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &testPKI{
		dir:    dir,
		pool:   pool,
		client: tls.Certificate{Certificate: [][]byte{clientDER}, PrivateKey: clientKey},
	}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func marshalKey(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeWebConfig writes a web config into dir; relative file names in it
// are resolved against dir by the exporter toolkit.
func writeWebConfig(t testing.TB, dir, content string) string {
	t.Helper()
	path := filepath.Join(dir, "web-config.yml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func bcryptHash(t *testing.T, password string) string {
	t.Helper()
	// The lowest cost keeps the test fast; the toolkit accepts any valid hash.
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// startServer runs a server with cfg on 127.0.0.1:0 until the test ends.
func startServer(t *testing.T, cfg Config, src view.Source) *Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	s, err := New(cfg, src, newTestRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	runServer(t, s)
	return s
}

// runServer runs s until the test ends, once it listens.
func runServer(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitListening(t, s, done)
}

// tlsClient trusts pool and presents certs, if any.
func tlsClient(t *testing.T, pool *x509.CertPool, certs ...tls.Certificate) *http.Client {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get asks url with basic auth when user is set, and returns the status.
func get(t *testing.T, c *http.Client, url, user, password string) (int, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// Every endpoint answers 401 without valid credentials and serves with
// them, over TLS that a client trusting the test CA accepts.
func TestWebConfigTLSAndBasicAuth(t *testing.T) {
	pki := newTestPKI(t)
	cfgFile := writeWebConfig(t, pki.dir, `tls_server_config:
  cert_file: server.crt
  key_file: server.key
basic_auth_users:
  `+testUser+`: `+bcryptHash(t, testPassword)+`
`)
	s := startServer(t, Config{WebConfigFile: cfgFile}, newTestSource())
	c := tlsClient(t, pki.pool)

	for _, path := range []string{"/metrics", "/api/v1/containers", "/healthz", "/readyz", "/api/v1/containers/100", "/nope"} {
		url := "https://" + s.Addr() + path
		for _, tc := range []struct {
			name, user, password string
			want                 int
		}{
			{"no credentials", "", "", http.StatusUnauthorized},
			{"bad password", testUser, "wrong", http.StatusUnauthorized},
			{"empty password", testUser, "", http.StatusUnauthorized},
			{"unknown user", "mallory", testPassword, http.StatusUnauthorized},
			{"credentials", testUser, testPassword, http.StatusOK},
		} {
			want := tc.want
			if path == "/nope" && want == http.StatusOK {
				want = http.StatusNotFound
			}
			status, err := get(t, c, url, tc.user, tc.password)
			if err != nil {
				t.Fatalf("%s, %s: %v", path, tc.name, err)
			}
			if status != want {
				t.Errorf("%s, %s: status %d, want %d", path, tc.name, status, want)
			}
		}
	}

	// A client that does not trust the CA fails the handshake, and plain
	// HTTP is not served.
	if _, err := get(t, tlsClient(t, x509.NewCertPool()), "https://"+s.Addr()+"/healthz", testUser, testPassword); err == nil {
		t.Error("TLS handshake succeeded with a client that does not trust the CA")
	} else if !errors.As(err, new(*tls.CertificateVerificationError)) {
		t.Errorf("untrusted server: %v, want a certificate verification error", err)
	}
	plain := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	if status, err := get(t, plain, "http://"+s.Addr()+"/healthz", testUser, testPassword); err == nil && status == http.StatusOK {
		t.Error("plain HTTP served on a TLS port")
	}
}

// Basic auth alone, without TLS, guards every endpoint too.
func TestWebConfigBasicAuthOnly(t *testing.T) {
	cfgFile := writeWebConfig(t, t.TempDir(), "basic_auth_users:\n  "+testUser+": "+bcryptHash(t, testPassword)+"\n")
	s := startServer(t, Config{WebConfigFile: cfgFile}, newTestSource())
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for _, path := range []string{"/metrics", "/api/v1/containers", "/healthz"} {
		if status, err := get(t, c, "http://"+s.Addr()+path, "", ""); err != nil || status != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d %v, want 401", path, status, err)
		}
		if status, err := get(t, c, "http://"+s.Addr()+path, testUser, testPassword); err != nil || status != http.StatusOK {
			t.Errorf("%s with credentials: %d %v, want 200", path, status, err)
		}
	}
}

// With client_auth_type RequireAndVerifyClientCert only clients holding a
// certificate of the configured CA get an answer.
func TestWebConfigClientCertificates(t *testing.T) {
	pki := newTestPKI(t)
	cfgFile := writeWebConfig(t, pki.dir, `tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
`)
	s := startServer(t, Config{WebConfigFile: cfgFile}, newTestSource())
	url := "https://" + s.Addr() + "/api/v1/containers"

	if status, err := get(t, tlsClient(t, pki.pool), url, "", ""); err == nil {
		t.Errorf("served %d to a client without a certificate", status)
	}
	if status, err := get(t, tlsClient(t, pki.pool, pki.client), url, "", ""); err != nil || status != http.StatusOK {
		t.Errorf("client with a certificate: %d %v, want 200", status, err)
	}
}

// A web config that cannot be served stops the agent at New, naming the
// file, rather than leaving it open or refusing every request.
func TestWebConfigInvalid(t *testing.T) {
	pki := newTestPKI(t)
	for name, content := range map[string]string{
		"unknown field":     "basic_auth_user:\n  a: b\n",
		"not YAML":          "{{{",
		"not a bcrypt hash": "basic_auth_users:\n  " + testUser + ": " + testPassword + "\n",
		"missing key":       "tls_server_config:\n  cert_file: server.crt\n",
		"no such cert":      "tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n",
		"bad client auth":   "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Sometimes\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{"server.crt", "server.key"} {
				b, err := os.ReadFile(filepath.Join(pki.dir, f))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			path := writeWebConfig(t, dir, content)
			_, err := New(Config{WebConfigFile: path}, newTestSource(), prometheus.NewRegistry(), nil)
			if err == nil {
				t.Fatal("New accepted an invalid web config")
			}
			if !strings.Contains(err.Error(), "web config file "+path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	_, err := New(Config{WebConfigFile: filepath.Join(t.TempDir(), "missing.yml")}, newTestSource(), prometheus.NewRegistry(), nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing web config: %v, want not exist", err)
	}
}

// The scheme of the agent's URLs (the profile links of its events) is
// https exactly when the web config has the toolkit serve TLS.
func TestConfigScheme(t *testing.T) {
	pki := newTestPKI(t)
	users := "basic_auth_users:\n  " + testUser + ": " + bcryptHash(t, testPassword) + "\n"
	for name, tc := range map[string]struct {
		content string // of the web config; "" for none
		want    string
	}{
		"no web config": {"", "http"},
		"basic auth":    {users, "http"},
		"empty TLS":     {"tls_server_config: {}\n" + users, "http"},
		"TLS":           {"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n", "https"},
		"TLS and auth":  {"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n" + users, "https"},
		"client certs":  {"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n", "https"},
		"rate limit":    {"rate_limit:\n  interval: 1s\n  burst: 5\n" + users, "http"},
	} {
		t.Run(name, func(t *testing.T) {
			var cfg Config
			if tc.content != "" {
				cfg.WebConfigFile = writeWebConfig(t, pki.dir, tc.content)
			}
			got, err := cfg.Scheme()
			if err != nil || got != tc.want {
				t.Errorf("Scheme() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	// A config the server would refuse has no scheme, and the error names it.
	path := writeWebConfig(t, t.TempDir(), "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n")
	if got, err := (Config{WebConfigFile: path}).Scheme(); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("invalid web config: %q, %v; want an error naming the file", got, err)
	}
}

// Failed TLS handshakes (a port scan, a client that does not trust the
// certificate) are counted and logged at debug, not a WARN each. Over TLS
// the cap on open connections frees each closed connection's slot.
func TestTLSHandshakeFailuresCountedNotWarned(t *testing.T) {
	pki := newTestPKI(t)
	cfgFile := writeWebConfig(t, pki.dir, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
	reg := newTestRegistry()
	logs, logger := newLogBuffer()
	s, err := New(Config{Listen: "127.0.0.1:0", WebConfigFile: cfgFile}, newTestSource(), reg, logger)
	if err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(s.Collector())
	runServer(t, s)

	const scans = 20
	for range scans {
		c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("\x16\x03\x01\x00\x05hello")) // a broken ClientHello
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.ReadAll(c)
		_ = c.Close()
	}
	if _, err := get(t, tlsClient(t, x509.NewCertPool()), "https://"+s.Addr()+"/healthz", "", ""); err == nil {
		t.Error("a client that does not trust the CA was served")
	}
	// The counter moves just before the line is logged: wait for both.
	var (
		got           float64
		warned, debug int
	)
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(20 * time.Millisecond) {
		got, warned, debug = testutil.ToFloat64(s.metrics.tlsHandshakeFails), 0, 0
		for line := range strings.SplitSeq(logs.String(), "\n") {
			if strings.Contains(line, "TLS handshake error") {
				if strings.Contains(line, "level=DEBUG") {
					debug++
				} else {
					warned++
				}
			}
		}
		if got >= scans+1 && warned+debug >= scans+1 {
			break
		}
	}
	if got != scans+1 {
		t.Errorf("tls_handshake_errors_total = %v, want %d", got, scans+1)
	}
	if warned != 0 || debug != scans+1 {
		t.Errorf("handshake errors logged %d times above debug and %d at debug, want 0 and %d", warned, debug, scans+1)
	}

	c := tlsClient(t, pki.pool)
	for i := range 2 * maxOpenConns {
		if status, err := get(t, c, "https://"+s.Addr()+"/healthz", "", ""); err != nil || status != http.StatusOK {
			t.Fatalf("TLS request %d on a new connection: %d %v", i, status, err)
		}
	}
}
