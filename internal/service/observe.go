package service

import (
	"context"
	"errors"
	"net"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/server/metrics"
	"github.com/tollgate/tollgate/store/redis"
)

// storeErrorKind classifies a store error for tollgate_store_errors_total:
// "" for nil; metrics.StoreTimeout when a deadline passed (--check-timeout,
// the caller's or the network's); metrics.StoreOther for a reply Tollgate
// does not expect (redis.ErrBadReply, a Redis error reply such as a script
// error) and for an error that does not wrap tollgate.ErrUnavailable;
// otherwise metrics.StoreUnavailable: connection refused, reset or closed,
// an open circuit, cluster down, a node loading or failing over (see
// redis.Kind.Unavailable).
func storeErrorKind(err error) string {
	if err == nil {
		return ""
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()) {
		return metrics.StoreTimeout
	}
	if errors.Is(err, redis.ErrBadReply) || !errors.Is(err, tollgate.ErrUnavailable) {
		return metrics.StoreOther
	}
	return metricKind(redis.KindOf(err))
}

// metricKind maps a redis.Kind to a metrics.Store* kind.
func metricKind(k redis.Kind) string {
	switch {
	case k == redis.KindTimeout:
		return metrics.StoreTimeout
	case k.Unavailable():
		return metrics.StoreUnavailable
	}
	return metrics.StoreOther
}
