package chaos_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/chaos/harness"
	"github.com/tollgate/tollgate/internal/testcluster"
	"github.com/tollgate/tollgate/store/redis"
)

// certName is the only name in the nodes' certificate: as with a managed
// cluster, nodes are reached by IP address (127.0.0.11…) and a client must
// verify against this name.
const certName = "cache.example.internal"

// tlsCluster is a cluster whose nodes also serve TLS on tlsPort (the same
// number on every node's address), with TLS on the bus and replication
// links. Clients on TLS get TLS ports in CLUSTER SLOTS and redirects; the
// test harness keeps using the plain ports.
var tlsCluster struct {
	once    sync.Once
	c       *testcluster.Cluster
	tlsPort int
	dir     string
	caFile  string
	err     error
}

// needTLS returns the TLS cluster, starting it on first use; it skips like
// needCluster.
func needTLS(t *testing.T) *testcluster.Cluster {
	t.Helper()
	tlsCluster.once.Do(func() {
		tc := &tlsCluster
		if tc.dir, tc.err = os.MkdirTemp("", "chaos-tls-"); tc.err != nil {
			return
		}
		var cert, key string
		if tc.caFile, cert, key, tc.err = writeCerts(tc.dir); tc.err != nil {
			return
		}
		hosts := defaultHosts()
		if tc.tlsPort, tc.err = freeTLSPort(hosts); tc.err != nil {
			return
		}
		tc.c, _, tc.err = startCluster(t, testcluster.Options{ExtraConfig: []string{
			"tls-port " + strconv.Itoa(tc.tlsPort),
			"tls-cert-file " + cert, "tls-key-file " + key, "tls-ca-cert-file " + tc.caFile,
			"tls-auth-clients no", "tls-cluster yes", "tls-replication yes",
		}}, false)
	})
	checkStart(t, tlsCluster.err)
	return tlsCluster.c
}

// tlsAddrs returns the TLS seed addresses of the TLS cluster.
func tlsAddrs(c *testcluster.Cluster) []string {
	var out []string
	for _, n := range c.Nodes() {
		out = append(out, net.JoinHostPort(n.Host, strconv.Itoa(tlsCluster.tlsPort)))
	}
	return out
}

func stopTLS() {
	if tlsCluster.c != nil {
		if err := tlsCluster.c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: stopping the TLS cluster:", err)
		}
	}
	if tlsCluster.dir != "" {
		os.RemoveAll(tlsCluster.dir)
	}
}

// defaultHosts are testcluster's default node addresses.
func defaultHosts() []string {
	first := net.ParseIP(testcluster.DefaultFirstHost).To4()
	var hs []string
	for i := range testcluster.DefaultMasters * (1 + testcluster.DefaultReplicas) {
		hs = append(hs, net.IPv4(127, 0, 0, first[3]+byte(i)).String())
	}
	return hs
}

// freeTLSPort picks a port bindable on every host, below testcluster's
// range (12000 and up for client ports, +10000 for bus ports) and the
// ephemeral range, so that neither takes it meanwhile.
func freeTLSPort(hosts []string) (int, error) {
	for range 100 {
		p := 2000 + mrand.IntN(10000)
		ok := true
		for _, h := range hosts {
			ln, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return p, nil
		}
	}
	return 0, errors.New("chaos: no free TLS port")
}

// writeCerts writes a CA and a server certificate for certName only (no IP
// SAN) into dir.
func writeCerts(dir string) (caFile, certFile, keyFile string, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tollgate-lab chaos CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return
	}
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: certName}, DNSNames: []string{certName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
		// Nodes present it on both ends of bus and replication links.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		return
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err == nil {
			err = os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER), err
}

// TestTLSFailover runs the load over TLS, verified against certName while
// nodes are dialled and redirected to by IP address, through a graceful
// failover of two shards (the second while the clients are idle), and
// checks that the clients' connections are TLS ones.
func TestTLSFailover(t *testing.T) {
	c := needTLS(t)
	s := newScenarioWith(t, c, "tls-failover", true, func(ctx context.Context) (*redis.Store, error) {
		return redis.New(ctx, redis.Options{Addrs: tlsAddrs(c), Cluster: true,
			TLS: &redis.TLSOptions{CAFile: tlsCluster.caFile, ServerName: certName}})
	})
	for run := range runs {
		sh := s.shards()[run]
		name := fmt.Sprintf("run %d: CLUSTER FAILOVER on %s (master %s), over TLS", run+1, sh.Replicas[0].Addr, sh.Master.Addr)
		check(t, harness.Failover(s.Scenario, sh, name, run == 1))
	}
	// Every client connection the masters have came in on the TLS port.
	port := ":" + strconv.Itoa(tlsCluster.tlsPort)
	for _, m := range s.masters() {
		v, err := m.Do(s.ctx, "CLIENT", "LIST", "TYPE", "normal")
		if err != nil {
			t.Fatal(err)
		}
		tlsConns, plain := 0, 0
		for l := range strings.Lines(v.(string)) {
			switch {
			case strings.Contains(l, "cmd=client|list"):
			case strings.Contains(l, "laddr="+m.Host+port+" "):
				tlsConns++
			default:
				plain++
			}
		}
		if tlsConns == 0 || plain > 0 {
			t.Errorf("master %s: %d client connections on the TLS port, %d others", m.Addr, tlsConns, plain)
		}
	}
}
