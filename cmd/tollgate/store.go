package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/redis"
)

// storeConfig selects the store: memory when both fields are empty.
type storeConfig struct {
	// Redis is a standalone Redis HOST:PORT.
	Redis string
	// RedisCluster are Redis Cluster seed nodes, HOST:PORT each.
	RedisCluster []string
	// Observer, if not nil, receives the Redis store's resilience events
	// (retries, fast failures, heals): the metrics.
	Observer redis.Observer
	// TLS, when not nil, makes every Redis connection use TLS.
	TLS *redis.TLSOptions
	// Username and PasswordFile authenticate to Redis (ACL user; the file
	// holds the password, or the access key, on its first line). The file
	// is read again for every new connection, so a rotated password
	// applies without a restart.
	Username, PasswordFile string
	// Logger receives the Redis store's warnings; nil discards.
	Logger *slog.Logger
	// AddressMap maps announced node addresses to reachable ones.
	AddressMap map[string]string
	// Tuning of the Redis store (redis.Options); zero values are its
	// defaults.
	DialTimeout, ConnTimeout, AttemptTimeout time.Duration
	Retries, ConnsPerNode, WaitReplicas      int
}

// addStoreFlags registers on f the flags that select the store: --redis,
// --redis-cluster, and the --redis-tls flags, any of which sets c.TLS (nil
// otherwise).
func addStoreFlags(f *pflag.FlagSet, c *storeConfig) {
	f.StringVar(&c.Redis, "redis", "", "standalone Redis `HOST:PORT` (default: in-memory store)")
	f.StringSliceVar(&c.RedisCluster, "redis-cluster", nil, "Redis Cluster seed nodes, `HOST:PORT[,HOST:PORT...]`")
	f.StringVar(&c.Username, "redis-username", "", "Redis ACL `user` (default: the default user)")
	f.StringVar(&c.PasswordFile, "redis-password-file", "", "`file` whose first line is the Redis password or access key")
	f.StringToStringVar(&c.AddressMap, "redis-address-map", nil, "announced Redis node addresses and where to reach them, `IP:PORT=HOST:PORT,...` (NAT, private endpoints)")
	f.DurationVar(&c.DialTimeout, "redis-dial-timeout", 0, "bound on connecting to a Redis node (default 5s)")
	f.DurationVar(&c.ConnTimeout, "redis-conn-timeout", 0, "a connection without any reply this long is closed and dialed again (default 2s)")
	f.DurationVar(&c.AttemptTimeout, "redis-attempt-timeout", 0, "bound on one attempt of a call, within the check's deadline (default 1s)")
	f.IntVar(&c.Retries, "redis-retries", 0, "retries of a call that failed transiently, within its deadline (default 2; negative: none)")
	f.IntVar(&c.ConnsPerNode, "redis-conns-per-node", 0, "connections to each Redis node, rounded up to a power of two (default: the client's)")
	f.IntVar(&c.WaitReplicas, "redis-wait-replicas", 0, "replicas each write waits for (Redis WAIT, up to 100ms); 0: none")
	tls := func() *redis.TLSOptions {
		if c.TLS == nil {
			c.TLS = &redis.TLSOptions{}
		}
		return c.TLS
	}
	str := func(name, usage string, field func(*redis.TLSOptions) *string) {
		f.Var(tlsValue{"string", func(v string) error { *field(tls()) = v; return nil }}, name, usage)
	}
	boolean := func(name, usage string, field func(*redis.TLSOptions) *bool) {
		f.VarPF(tlsValue{"bool", func(v string) error {
			b, err := strconv.ParseBool(v)
			if err == nil && b {
				o := tls()
				if field != nil {
					*field(o) = true
				}
			}
			return err
		}}, name, "", usage).NoOptDefVal = "true"
	}
	boolean("redis-tls", "connect to Redis over TLS (implied by the other --redis-tls flags)", nil)
	str("redis-tls-ca-file", "PEM `file` of the CAs that sign the Redis servers' certificates (default: the system's roots)",
		func(o *redis.TLSOptions) *string { return &o.CAFile })
	str("redis-tls-cert-file", "PEM client certificate `file`, for servers that require one (with --redis-tls-key-file)",
		func(o *redis.TLSOptions) *string { return &o.CertFile })
	str("redis-tls-key-file", "PEM `file` of the client certificate's key",
		func(o *redis.TLSOptions) *string { return &o.KeyFile })
	str("redis-tls-server-name", "`name` to verify the servers' certificates against (default: the host dialed; set it when a cluster redirects to raw IPs)",
		func(o *redis.TLSOptions) *string { return &o.ServerName })
	boolean("redis-tls-insecure-skip-verify", "accept any server certificate (never in production)",
		func(o *redis.TLSOptions) *bool { return &o.InsecureSkipVerify })
}

// tlsValue is a flag value of type typ that hands each value to set.
type tlsValue struct {
	typ string
	set func(string) error
}

func (v tlsValue) Set(s string) error { return v.set(s) }
func (v tlsValue) String() string     { return "" }
func (v tlsValue) Type() string       { return v.typ }

// redisOptions returns the options of the Redis store c selects, with the
// password read from its file.
func (c storeConfig) redisOptions() (redis.Options, error) {
	opts := redis.Options{Addrs: c.RedisCluster, Cluster: true}
	if c.Redis != "" {
		opts = redis.Options{Addrs: []string{c.Redis}}
	}
	opts.Observer = c.Observer
	opts.TLS = c.TLS
	opts.Username = c.Username
	opts.AddressMap = c.AddressMap
	opts.DialTimeout, opts.ConnTimeout, opts.AttemptTimeout = c.DialTimeout, c.ConnTimeout, c.AttemptTimeout
	opts.Retries, opts.ConnsPerNode, opts.WaitReplicas = c.Retries, c.ConnsPerNode, c.WaitReplicas
	opts.Logger = c.Logger
	if c.PasswordFile != "" {
		var err error
		if opts.Password, err = readPassword(c.PasswordFile); err != nil {
			return redis.Options{}, err
		}
		// Each new connection reads the file again (rotation).
		file, user := c.PasswordFile, c.Username
		opts.Credentials = func() (string, string, error) {
			p, err := readPassword(file)
			return user, p, err
		}
	}
	return opts, nil
}

// readPassword returns the first line of file, without its line end (LF or
// CRLF). Its errors name the file, never the content.
func readPassword(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--redis-password-file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if line = strings.TrimSuffix(line, "\r"); line == "" {
		return "", fmt.Errorf("--redis-password-file %s: empty first line", file)
	}
	return line, nil
}

// kind names the selected store for logs: "memory", "redis" or
// "redis-cluster".
func (c storeConfig) kind() string {
	switch {
	case c.Redis != "":
		return "redis"
	case len(c.RedisCluster) > 0:
		return "redis-cluster"
	}
	return "memory"
}

func (c storeConfig) validate() error {
	if c.Redis != "" && len(c.RedisCluster) > 0 {
		return errors.New("--redis and --redis-cluster are mutually exclusive")
	}
	if c.Redis != "" {
		if err := checkAddr(c.Redis); err != nil {
			return fmt.Errorf("--redis: %w", err)
		}
	}
	for _, a := range c.RedisCluster {
		if err := checkAddr(a); err != nil {
			return fmt.Errorf("--redis-cluster: %w", err)
		}
	}
	if (c.TLS != nil || c.Username != "" || c.PasswordFile != "") && c.kind() == "memory" {
		return errors.New("--redis-tls, --redis-username and --redis-password-file need --redis or --redis-cluster")
	}
	return nil
}

func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" || port == "" {
		return fmt.Errorf("address %q: want HOST:PORT", addr)
	}
	return nil
}

// openStore builds the store that cfg selects and returns it with the
// functions that check its readiness and close it.
func openStore(ctx context.Context, cfg storeConfig) (st tollgate.Store, ready func(context.Context) error, closeFn func() error, err error) {
	if err := cfg.validate(); err != nil {
		return nil, nil, nil, err
	}
	if cfg.kind() == "memory" {
		m := memory.New(memory.Options{})
		return m, nil, m.Close, nil
	}
	opts, err := cfg.redisOptions()
	if err != nil {
		return nil, nil, nil, err
	}
	r, err := redis.New(ctx, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	return r, r.Ready, r.Close, nil
}

// deadlineStore bounds each call of a store by a timeout (--check-timeout),
// so that a store that hangs fails as unavailable (the Limiter wraps the
// context error in ErrUnavailable) and the failure mode applies, rather than
// the request waiting for the server's write timeout.
type deadlineStore struct {
	store   tollgate.Store
	timeout time.Duration
}

func (s deadlineStore) Do(ctx context.Context, req tollgate.Request) (tollgate.Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.Do(ctx, req)
}

func (s deadlineStore) Reset(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.Reset(ctx, key)
}
