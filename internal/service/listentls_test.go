package service

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tollgate/tollgate/internal/testutil"
)

// testCA is a certificate authority made in the test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tollgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate for 127.0.0.1 (server or client) of serial,
// and its key, both PEM.
func (ca *testCA) issue(t *testing.T, serial int64, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "tollgate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// Both listeners over mutual TLS: a client without a certificate is
// refused, one with a certificate of the client CA is served, and a new
// certificate written over the old one is served without a restart.
func TestServeMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue(t, 100, false)
	cliCert, cliKey := ca.issue(t, 200, true)
	cfg := testConfig()
	cfg.Listen.CertFile = filepath.Join(dir, "cert.pem")
	cfg.Listen.KeyFile = filepath.Join(dir, "key.pem")
	testutil.WriteAtomic(t, cfg.Listen.CertFile, string(srvCert))
	testutil.WriteAtomic(t, cfg.Listen.KeyFile, string(srvKey))
	cfg.Listen.ClientCAFile = testutil.WriteTemp(t, dir, "ca.pem", string(ca.pem))
	cfg.GRPC.Listen = "127.0.0.1:0"
	cfg.GRPC.EnvoyConfig = testutil.WriteTemp(t, dir, "envoy.yaml", testEnvoy)
	s := serve(t, cfg)

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	pair, err := tls.X509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	withCert := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}
	without := &tls.Config{RootCAs: roots}

	consume := func(tc *tls.Config) (int, *big.Int, error) {
		client := &http.Client{Timeout: testutil.Wait, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
		resp, err := client.Post("https://"+s.http+"/v1/consume", "application/json", strings.NewReader(`{"key":"k","limit":1000,"window":"1m"}`))
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber, nil
	}
	if code, serial, err := consume(withCert); err != nil || code != 200 || serial.Int64() != 100 {
		t.Fatalf("HTTPS with a client certificate: %d, serial %v, %v", code, serial, err)
	}
	if _, _, err := consume(without); err == nil {
		t.Error("HTTPS without a client certificate was served")
	}
	if r, err := http.Get("http://" + s.http + "/healthz"); err == nil {
		r.Body.Close()
		if r.StatusCode == 200 {
			t.Error("plain HTTP served on a TLS listener")
		}
	}

	conn, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(credentials.NewTLS(withCert)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := overallCode(t, conn, "user=tls"); got != "OK" {
		t.Errorf("gRPC over mutual TLS: %s", got)
	}
	bare, err := grpc.NewClient(s.grpc, grpc.WithTransportCredentials(credentials.NewTLS(without)))
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if got := overallCode(t, bare, "user=tls"); got == "OK" {
		t.Error("gRPC without a client certificate was served")
	}

	// Renewal: a new certificate, written over the old one, is served.
	newCert, newKey := ca.issue(t, 101, false)
	testutil.WriteAtomic(t, cfg.Listen.KeyFile, string(newKey))
	testutil.WriteAtomic(t, cfg.Listen.CertFile, string(newCert))
	deadline := time.Now().Add(testutil.Wait)
	for {
		code, serial, err := consume(withCert)
		if err == nil && code == 200 && serial.Int64() == 101 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("renewed certificate not served: %d, serial %v, %v\n%s", code, serial, err, s.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	testutil.WaitLog(t, s.logs, "TLS certificate reloaded")
}

// A certificate file that breaks keeps the previous certificate in force,
// with an error logged; a bad file at start fails.
func TestCertReloaderKeepsOldOnError(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	cert, key := ca.issue(t, 7, false)
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	testutil.WriteAtomic(t, certFile, string(cert))
	testutil.WriteAtomic(t, keyFile, string(key))
	var logs testutil.SyncBuffer
	r, err := newCertReloader(certFile, keyFile, "", nil, NewLogger(&logs, slog.LevelInfo))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.now = func() time.Time { return now }
	testutil.WriteAtomic(t, certFile, "not a certificate")
	now = now.Add(2 * certCheckInterval)
	if got := r.current().Certificates[0]; got.Leaf == nil || got.Leaf.SerialNumber.Int64() != 7 {
		t.Errorf("after a broken file: %v, want the previous certificate", got.Leaf)
	}
	if !strings.Contains(logs.String(), "previous certificate stays in force") {
		t.Errorf("no error logged:\n%s", logs.String())
	}
	if _, err := newCertReloader(certFile, keyFile, "", nil, NewLogger(io.Discard, slog.LevelInfo)); !errors.Is(err, ErrListenTLS) {
		t.Errorf("a broken file at start: %v, want ErrListenTLS", err)
	}
}
