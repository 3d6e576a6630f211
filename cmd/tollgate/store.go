package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

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
	opts := redis.Options{Addrs: cfg.RedisCluster, Cluster: true}
	if cfg.Redis != "" {
		opts = redis.Options{Addrs: []string{cfg.Redis}}
	}
	opts.Observer = cfg.Observer
	r, err := redis.New(ctx, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	return r, r.Ping, r.Close, nil
}

// deadlineStore bounds each call of a store by a timeout (--check-timeout),
// so that a store that hangs fails as unavailable (the Limiter wraps the
// context error in ErrUnavailable) and the failure mode applies, rather than
// the request waiting for the server's write timeout.
type deadlineStore struct {
	store   tollgate.Store
	timeout time.Duration
}

func (s deadlineStore) Do(ctx context.Context, req tollgate.Request) (tollgate.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.Do(ctx, req)
}

func (s deadlineStore) Reset(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.store.Reset(ctx, key)
}
