package service

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/settings"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/redis"
)

// RedisOptions returns the options of the Redis store r selects, with TLS
// when t is on, the password read from its file (and read again for every
// new connection), obs receiving the store's events and logger its
// warnings (both may be nil).
func RedisOptions(r settings.Redis, t settings.TLS, obs redis.Observer, logger *slog.Logger) (redis.Options, error) {
	opts := redis.Options{Addrs: r.Cluster, Cluster: true}
	if r.Addr != "" {
		opts = redis.Options{Addrs: []string{r.Addr}}
	}
	opts.Observer = obs
	if t.On() {
		opts.TLS = &redis.TLSOptions{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile,
			ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	}
	opts.Username = r.Username
	opts.AddressMap = r.AddressMap
	opts.DialTimeout, opts.ConnTimeout, opts.AttemptTimeout = r.DialTimeout, r.ConnTimeout, r.AttemptTimeout
	opts.Retries, opts.ConnsPerNode, opts.WaitReplicas = r.Retries, r.ConnsPerNode, r.WaitReplicas
	opts.Logger = logger
	if r.PasswordFile != "" {
		var err error
		if opts.Password, err = readPassword(r.PasswordFile); err != nil {
			return redis.Options{}, err
		}
		warnPassword(r.PasswordFile, t.On(), logger)
		// Each new connection reads the file again (rotation).
		file, user := r.PasswordFile, r.Username
		opts.Credentials = func() (string, string, error) {
			p, err := readPassword(file)
			return user, p, err
		}
	}
	return opts, nil
}

// warnPassword warns when the password file is readable by others than
// its owner, and when the password is to be sent without TLS (AUTH in
// clear text on the network).
func warnPassword(file string, tls bool, logger *slog.Logger) {
	if logger == nil {
		return
	}
	if fi, err := os.Stat(file); err == nil && fi.Mode().Perm()&0o077 != 0 {
		logger.Warn("Redis password file is readable by others than its owner",
			slog.String("file", file), slog.String("mode", fi.Mode().Perm().String()))
	}
	if !tls {
		logger.Warn("the Redis password is sent over plain TCP: anyone on the path can read it; turn on --redis-tls",
			slog.String("file", file))
	}
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

// OpenStore builds the store r and t select (the memory store when r names
// no Redis) and returns it with the functions that check its readiness (nil
// for memory) and close it. obs and logger are as for RedisOptions.
// A memory store holds at most memory.DefaultMaxKeys keys.
func OpenStore(ctx context.Context, r settings.Redis, t settings.TLS, obs redis.Observer, logger *slog.Logger) (st tollgate.Store, ready func(context.Context) error, closeFn func() error, err error) {
	return openStore(ctx, settings.Settings{Redis: r, TLS: t, Memory: settings.Default().Memory}, obs, logger)
}

// openStore is OpenStore for the store s selects, a memory store capped at
// s.Memory.MaxKeys; obs, when it is a memory.Observer too, is told of its
// evictions.
func openStore(ctx context.Context, s settings.Settings, obs redis.Observer, logger *slog.Logger) (st tollgate.Store, ready func(context.Context) error, closeFn func() error, err error) {
	r, t := s.Redis, s.TLS
	if err := s.ValidateStore(); err != nil {
		return nil, nil, nil, err
	}
	if r.Kind() == "memory" {
		m := memory.New(memoryOptions(s.Memory, obs))
		return m, nil, m.Close, nil
	}
	opts, err := RedisOptions(r, t, obs, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	rs, err := redis.New(ctx, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	return rs, rs.Ready, rs.Close, nil
}

// memoryOptions are the options of a memory store under m, with obs told of
// evictions when it is a memory.Observer.
func memoryOptions(m settings.Memory, obs any) memory.Options {
	o := memory.Options{MaxKeys: m.MaxKeys}
	if mo, ok := obs.(memory.Observer); ok && mo != nil {
		o.Observer = mo
	}
	return o
}
