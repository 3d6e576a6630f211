package bench

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/redis/rueidis"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/redis"
)

// KindError is an error with a kind of its own, as the HTTP and gRPC targets
// make of answers that are not a decision.
type KindError struct {
	Kind string
	Err  error
}

func (e *KindError) Error() string { return e.Err.Error() }
func (e *KindError) Unwrap() error { return e.Err }

// Kind names the kind of a check's error, for the report: the KindError's
// own kind; "timeout" or "canceled" for context errors; "invalid_input" or
// "cost_exceeds_limit" for the Limiter's input errors; for Redis errors,
// the store's kinds (redis.Kind's labels: "clusterdown", "moved", "conn", …);
// "conn" for other network errors; otherwise "other".
func Kind(err error) string {
	var ke *KindError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ke):
		return ke.Kind
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, tollgate.ErrCostExceedsLimit):
		return "cost_exceeds_limit"
	case errors.Is(err, tollgate.ErrInvalidKey), errors.Is(err, tollgate.ErrInvalidCost),
		errors.Is(err, tollgate.ErrInvalidLimit), errors.Is(err, tollgate.ErrInvalidRequestID):
		return "invalid_input"
	}
	if _, ok := rueidis.IsRedisErr(err); ok || errors.Is(err, tollgate.ErrUnavailable) || errors.Is(err, rueidis.ErrClosing) {
		return redis.KindOf(err).String()
	}
	// go-redis: a reply error, its first word ("CLUSTERDOWN …", "MOVED …").
	var re interface{ RedisError() }
	if errors.As(err, &re) {
		if w, _, _ := strings.Cut(err.Error(), " "); w != "" && strings.ToUpper(w) == w {
			return strings.ToLower(w)
		}
		return "other"
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return "conn"
	}
	return "other"
}
