package main

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/server/metrics"
	"github.com/tollgate/tollgate/store/redis"
)

// storeObserver is told of every store call (*metrics.Metrics).
type storeObserver interface {
	StoreCall(op string, took time.Duration, errKind string)
}

// observedStore reports each call of a store, with its duration and, when
// it fails, the kind of failure (storeErrorKind). A call whose caller gave
// up (its context canceled: the client went away) is not reported: it says
// nothing about the store.
type observedStore struct {
	store tollgate.Store
	obs   storeObserver
}

func (s observedStore) Do(ctx context.Context, req tollgate.Request) (tollgate.Decision, error) {
	start := time.Now()
	res, err := s.store.Do(ctx, req)
	s.report(ctx, req.Op.String(), start, err)
	return res, err
}

func (s observedStore) Reset(ctx context.Context, key string) error {
	start := time.Now()
	err := s.store.Reset(ctx, key)
	s.report(ctx, "reset", start, err)
	return err
}

func (s observedStore) report(ctx context.Context, op string, start time.Time, err error) {
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return
	}
	s.obs.StoreCall(op, time.Since(start), storeErrorKind(err))
}

// storeErrorKind classifies a store error for tollgate_store_errors_total:
// "" for nil; metrics.StoreTimeout when a deadline passed (--check-timeout,
// the caller's or the network's); metrics.StoreOther for a reply Tollgate
// does not expect (redis.ErrBadReply, a Redis error reply such as a script
// error) and for an error that does not wrap tollgate.ErrUnavailable;
// otherwise metrics.StoreUnavailable: connection refused, reset or closed,
// an open circuit, cluster down, a node loading or failing over.
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
	return kindOfRedisKind(redis.ErrorKind(err))
}

// kindOfRedisKind maps a redis.ErrorKind to a metrics.Store* kind.
func kindOfRedisKind(kind string) string {
	switch kind {
	case "timeout":
		return metrics.StoreTimeout
	case "noscript", "other":
		return metrics.StoreOther
	}
	// circuit_open, canceled, moved, ask, clusterdown, tryagain, loading,
	// readonly, masterdown, closed, conn: the node cannot serve now.
	return metrics.StoreUnavailable
}
