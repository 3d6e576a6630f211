package redis_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testcluster"
	"github.com/tollgate/tollgate/store/redis"
)

// certName is the only name in the server's certificate, as with a managed
// cluster whose nodes are reached by IP address.
const certName = "cache.example.internal"

// writeCerts writes a CA and a server certificate for certName (no IP SAN)
// into dir and returns the CA's path.
func writeCerts(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tollgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	must(err)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: certName}, DNSNames: []string{certName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	must(err)
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	must(err)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		must(os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}

// freePort returns a port free on host now.
func freePort(t *testing.T, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// The store reaches a TLS server by IP address and verifies its certificate
// against TLSOptions.ServerName; without it verification fails, and only an
// explicit, logged InsecureSkipVerify skips it.
func TestTLSServerName(t *testing.T) {
	const host = "127.0.0.20"
	dir := t.TempDir()
	caFile, certFile, keyFile := writeCerts(t, dir)
	tlsPort := freePort(t, host)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := testcluster.StartStandalone(ctx, testcluster.Options{
		Hosts: []string{host},
		ExtraConfig: []string{
			fmt.Sprintf("tls-port %d", tlsPort),
			"tls-cert-file " + certFile, "tls-key-file " + keyFile, "tls-ca-cert-file " + caFile,
			"tls-auth-clients no",
		},
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	addr := net.JoinHostPort(host, fmt.Sprint(tlsPort))

	s := open(t, redis.Options{Addrs: []string{addr}, TLS: &redis.TLSOptions{CAFile: caFile, ServerName: certName}})
	if res, err := tollgate.New(s, tollgate.Options{}).Consume(ctx, t.Name(), 1, tollgate.PerSecond(5)); err != nil || !res.Allowed {
		t.Fatalf("with server name: %+v, %v", res, err)
	}

	_, err = redis.New(ctx, redis.Options{Addrs: []string{addr}, TLS: &redis.TLSOptions{CAFile: caFile}})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without server name: got %v, want a certificate error", err)
	}

	var logs bytes.Buffer
	s, err = redis.New(ctx, redis.Options{Addrs: []string{addr}, TLS: &redis.TLSOptions{InsecureSkipVerify: true},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("insecure: %v", err)
	}
	s.Close()
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("insecure TLS logged no warning: %q", logs.String())
	}

	for _, bad := range []redis.TLSOptions{
		{CAFile: filepath.Join(dir, "missing.pem")},
		{CAFile: keyFile},    // not a certificate
		{CertFile: certFile}, // no key
	} {
		if _, err := redis.New(ctx, redis.Options{Addrs: []string{addr}, TLS: &bad}); err == nil || errors.Is(err, tollgate.ErrUnavailable) {
			t.Errorf("TLS options %+v: got %v, want a configuration error", bad, err)
		}
	}
}
