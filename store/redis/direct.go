package redis

// For tools that reach the store's servers directly, such as the benchmark
// peers and the redis-benchmark ceiling of `tollgate-lab bench --compare`.

import (
	"crypto/tls"
	"log/slog"
)

// Script returns the source of the Lua script that checks a key against its
// limits (scripts/check.lua; its header documents KEYS, ARGV and the reply).
func Script() string { return checkLua }

// TLSConfig returns the tls.Config a Store with these options uses, or nil
// for nil options. It logs nothing (New warns about InsecureSkipVerify).
func (o *TLSOptions) TLSConfig() (*tls.Config, error) {
	return o.config(slog.New(slog.DiscardHandler))
}
