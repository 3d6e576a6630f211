package redis

// For tools that reach the store's servers directly, such as the benchmark
// peers and the redis-benchmark ceiling of `tollgate bench --compare`.

import (
	"crypto/tls"
	"log/slog"

	"github.com/tollgate/tollgate"
)

// Script returns the source of the Lua script that runs algorithm a
// (scripts/*.lua; their header documents KEYS, ARGV and the reply), or ""
// for an unknown algorithm.
func Script(a tollgate.Algorithm) string {
	switch a {
	case tollgate.SlidingLog:
		return slidingLogLua
	case tollgate.SlidingWindow:
		return slidingWindowLua
	case tollgate.GCRA:
		return gcraLua
	}
	return ""
}

// TLSConfig returns the tls.Config a Store with these options uses, or nil
// for nil options. It logs nothing (New warns about InsecureSkipVerify).
func (o *TLSOptions) TLSConfig() (*tls.Config, error) {
	return o.config(slog.New(slog.DiscardHandler))
}
