package redis

// How the store reaches nodes: TLS, address mapping, observed connections.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
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

// dialer dials the address m maps an announced address to, or the address
// itself, and wraps each connection so that obs sees what rueidis handles
// out of sight: reconnects, redirects and slot-map reloads. TLS, when on,
// still verifies against Options.TLS's ServerName (or the announced host,
// when that is empty).
//
// lost is told the announced address of a connection that the node closed,
// or that is closed after a request went unanswered for deadAfter / 2 (the
// client tears down a connection whose node stopped answering).
func dialer(m map[string]string, obs Observer, deadAfter time.Duration, lost func(addr string)) func(context.Context, string, *net.Dialer, *tls.Config) (net.Conn, error) {
	var dialed sync.Map // address → struct{}: a second dial is a reconnect
	return func(ctx context.Context, addr string, d *net.Dialer, tc *tls.Config) (net.Conn, error) {
		target := addr
		if to, ok := m[addr]; ok {
			target = to
		}
		var c net.Conn
		var err error
		if tc == nil {
			c, err = d.DialContext(ctx, "tcp", target)
		} else {
			if tc.ServerName == "" {
				host, _, herr := net.SplitHostPort(addr)
				if herr != nil {
					return nil, herr
				}
				tc = tc.Clone()
				tc.ServerName = host
			}
			c, err = (&tls.Dialer{NetDialer: d, Config: tc}).DialContext(ctx, "tcp", target)
		}
		if err != nil {
			return nil, err
		}
		if _, again := dialed.LoadOrStore(addr, struct{}{}); again {
			obs.Reconnect()
		}
		return &observedConn{Conn: c, obs: obs, addr: addr, deadAfter: deadAfter, lost: lost}, nil
	}
}

// observedConn counts, in the RESP it carries, the redirects Redis answers
// (error replies "-MOVED" and "-ASK" at the start of a line) and the slot-map
// reloads the client asks for (CLUSTER SLOTS or SHARDS). A match split
// across two reads or writes is missed; the figures are for metrics.
type observedConn struct {
	net.Conn
	obs       Observer
	addr      string
	deadAfter time.Duration
	lost      func(addr string)
	// Unix ns of the last read and write, for Close to tell a connection
	// torn down for want of an answer.
	lastRead, lastWrite atomic.Int64
	told                atomic.Bool
}

// tell reports the connection lost, once.
func (c *observedConn) tell() {
	if c.lost != nil && c.told.CompareAndSwap(false, true) {
		c.lost(c.addr)
	}
}

// Close notes a connection closed while a request waited for an answer
// longer than half the dead-connection timeout: its node stopped answering.
func (c *observedConn) Close() error {
	r, w := c.lastRead.Load(), c.lastWrite.Load()
	if w > r && time.Now().UnixNano()-w >= int64(c.deadAfter/2) {
		c.tell()
	}
	return c.Conn.Close()
}

var (
	movedReply    = []byte("\n-MOVED ")
	askReply      = []byte("\n-ASK ")
	slotsRequest  = []byte("$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n")
	shardsRequest = []byte("$7\r\nCLUSTER\r\n$6\r\nSHARDS\r\n")
)

func (c *observedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.lastRead.Store(time.Now().UnixNano())
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		c.tell() // closed by the node, or reset
	}
	if b := p[:n]; n > 0 && bytes.IndexByte(b, '-') >= 0 {
		for range countLines(b, movedReply) {
			c.obs.Redirect("moved")
		}
		for range countLines(b, askReply) {
			c.obs.Redirect("ask")
		}
	}
	return n, err
}

func (c *observedConn) Write(p []byte) (int, error) {
	c.lastWrite.Store(time.Now().UnixNano())
	if bytes.Contains(p, slotsRequest) || bytes.Contains(p, shardsRequest) {
		c.obs.TopologyRefresh()
	}
	return c.Conn.Write(p)
}

// countLines counts pat (which starts with a newline) in b, also at b's start.
func countLines(b, pat []byte) int {
	n := bytes.Count(b, pat)
	if bytes.HasPrefix(b, pat[1:]) {
		n++
	}
	return n
}
