package service

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// ErrListenTLS is wrapped by the errors of the listeners' TLS files.
var ErrListenTLS = errors.New("listener TLS")

// certCheckInterval is how often, at most, a new connection looks whether
// the TLS files changed.
const certCheckInterval = time.Second

// certReloader serves a listener's TLS: its certificate and, for mutual
// TLS, its client CAs, read again when a file changes. A file that fails to
// load after a change is logged, and the previous certificate stays in
// force.
type certReloader struct {
	cert, key, clientCA string
	protos              []string // ALPN
	log                 *slog.Logger
	now                 func() time.Time

	mu      sync.Mutex
	stamp   string // the files' sizes and modification times when loaded
	checked time.Time
	cfg     *tls.Config
}

// newCertReloader loads the files (clientCA may be "") and fails if they do
// not load.
func newCertReloader(cert, key, clientCA string, protos []string, logger *slog.Logger) (*certReloader, error) {
	r := &certReloader{cert: cert, key: key, clientCA: clientCA, protos: protos, log: logger, now: time.Now}
	stamp, err := r.stampFiles()
	if err != nil {
		return nil, err
	}
	if r.cfg, err = r.load(); err != nil {
		return nil, err
	}
	r.stamp, r.checked = stamp, r.now()
	return r, nil
}

// TLSConfig is the listener's config: every handshake gets the current
// certificate and client CAs.
func (r *certReloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         r.protos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return r.current(), nil },
		// ServeTLS wants a certificate source on the outer config too.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &r.current().Certificates[0], nil },
	}
}

// current returns the config, reloaded first if a file changed since the
// last look (at most once per certCheckInterval).
func (r *certReloader) current() *tls.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= certCheckInterval {
		r.checked = now
		stamp, err := r.stampFiles()
		if err == nil && stamp != r.stamp {
			cfg, lerr := r.load()
			err = lerr
			if lerr == nil {
				r.cfg, r.stamp = cfg, stamp
				r.log.Info("TLS certificate reloaded", slog.String("cert", r.cert))
			}
		}
		if err != nil {
			r.log.Error("TLS files not reloaded; the previous certificate stays in force",
				slog.String("cert", r.cert), slog.Any("error", err))
		}
	}
	return r.cfg
}

func (r *certReloader) files() []string {
	fs := []string{r.cert, r.key}
	if r.clientCA != "" {
		fs = append(fs, r.clientCA)
	}
	return fs
}

func (r *certReloader) stampFiles() (string, error) {
	var b []byte
	for _, f := range r.files() {
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrListenTLS, err)
		}
		b = fmt.Appendf(b, "%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return string(b), nil
}

func (r *certReloader) load() (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(r.cert, r.key)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrListenTLS, r.cert, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: r.protos, Certificates: []tls.Certificate{pair}}
	if r.clientCA != "" {
		pem, err := os.ReadFile(r.clientCA)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrListenTLS, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: %s: no PEM certificate", ErrListenTLS, r.clientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
