package redis

// How the store reaches nodes: TLS and address mapping.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
)

// TLSOptions configures TLS to Redis. The zero value verifies the server
// with the system's roots, against the host name dialed.
type TLSOptions struct {
	// CAFile is a PEM file of the CAs that sign the servers' certificates;
	// "" means the system's roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// servers that require one (tls-auth-clients); both or neither.
	CertFile, KeyFile string
	// ServerName is the name the servers' certificates are verified against.
	// Managed clusters redirect to raw IP addresses (MOVED 3664
	// 10.61.0.133:8501) while their certificates name a host: set this to
	// that host name. "" means the host of each address dialed.
	ServerName string
	// InsecureSkipVerify accepts any certificate. Never in production: it
	// is logged as a warning when the store starts.
	InsecureSkipVerify bool
}

// config builds the tls.Config, TLS 1.2 at least; nil options mean no TLS.
func (o *TLSOptions) config(log *slog.Logger) (*tls.Config, error) {
	if o == nil {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis: TLS CA: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis: TLS CA %s: no PEM certificate", o.CAFile)
		}
	}
	switch {
	case o.CertFile != "" && o.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis: TLS client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	case o.CertFile != "" || o.KeyFile != "":
		return nil, errors.New("redis: TLS client certificate needs both a certificate and a key file")
	}
	if o.InsecureSkipVerify {
		c.InsecureSkipVerify = true
		log.Warn("redis: TLS certificate verification is off (InsecureSkipVerify): any server, or anyone between, is trusted")
	}
	return c, nil
}

// mappedDialer dials the address m maps an announced address to, or the
// address itself. TLS, when on, still verifies against Options.TLS's
// ServerName (or the announced host, when that is empty).
func mappedDialer(m map[string]string) func(context.Context, string, *net.Dialer, *tls.Config) (net.Conn, error) {
	return func(ctx context.Context, addr string, d *net.Dialer, tc *tls.Config) (net.Conn, error) {
		target := addr
		if to, ok := m[addr]; ok {
			target = to
		}
		if tc == nil {
			return d.DialContext(ctx, "tcp", target)
		}
		if tc.ServerName == "" {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			tc = tc.Clone()
			tc.ServerName = host
		}
		return (&tls.Dialer{NetDialer: d, Config: tc}).DialContext(ctx, "tcp", target)
	}
}
