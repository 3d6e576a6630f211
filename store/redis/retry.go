package redis

import (
	"cmp"
	"context"
	cryptorand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// retryPolicy retries transient failures within the caller's deadline.
type retryPolicy struct {
	retries int
	attempt time.Duration
	backoff time.Duration
	// split, when set, gives an attempt at most half the time left, so
	// that a call to a node that went silent leaves time for a retry.
	split bool
	// between, when set, runs after a failed attempt that is retried,
	// before the backoff.
	between func(ctx context.Context, err error)
	// inFlight holds a token per attempt still running, its caller gone or
	// not (Options.MaxInFlight); nil means no bound.
	inFlight chan struct{}
}

func newRetryPolicy(o Options) retryPolicy {
	p := retryPolicy{retries: o.Retries, attempt: o.AttemptTimeout, backoff: o.RetryBackoff}
	if p.retries == 0 {
		p.retries = DefaultRetries
	}
	if p.attempt <= 0 {
		p.attempt = DefaultAttemptTimeout
	}
	if p.backoff <= 0 {
		p.backoff = DefaultRetryBackoff
	}
	p.inFlight = make(chan struct{}, cmp.Or(max(o.MaxInFlight, 0), DefaultMaxInFlight))
	return p
}

// retryDo runs call, and again after a transient failure while retries and
// the deadline last, if retryable says a second run is safe. Each attempt has
// its own timeout, within ctx's, and ends with it even if the client does
// not (see bounded).
func retryDo[T any](ctx context.Context, p retryPolicy, retryable bool, obs Observer, call func(context.Context) (T, error)) (T, error) {
	for attempt := 0; ; attempt++ {
		timeout := p.attempt
		if dl, ok := ctx.Deadline(); ok && p.split && attempt < p.retries {
			timeout = min(timeout, time.Until(dl)/2)
		}
		actx, cancel := context.WithTimeout(ctx, timeout)
		v, err := bounded(actx, p.inFlight, call)
		cancel()
		// Refused credentials may have been rotated since the connection
		// asked for them: a connection refused so ran nothing, and asking
		// again once is safe for every call.
		again := attempt == 0 && authFailed(err)
		if err == nil || attempt >= p.retries || ctx.Err() != nil || !again && (!retryable || !(transient(err) || stray(err))) {
			return v, err
		}
		obs.Retry(KindOf(err).String())
		if p.between != nil {
			p.between(ctx, err)
		}
		// Full jitter: spreads the retries of many callers after a failover.
		wait := rand.N(min(maxRetryBackoff, p.backoff<<attempt)) + time.Millisecond
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return v, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
	}
}

// bounded runs call and returns when it does or when ctx ends, whichever is
// first. The client can block a caller past its context: a node that stops
// answering (black-holed, not closed) fills its connection's pipeline, and
// new calls wait for room until the connection is torn down. The call then
// finishes in the background and its result is dropped. Each call holds a
// token of inFlight (nil: no bound) until it really ends, so that calls left
// behind on an unresponsive node are at most its capacity: past it, a call
// fails at once with ErrOverloaded.
func bounded[T any](ctx context.Context, inFlight chan struct{}, call func(context.Context) (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	var zero T
	if inFlight != nil {
		select {
		case inFlight <- struct{}{}:
		default:
			return zero, fmt.Errorf("%w: %d calls still running", ErrOverloaded, cap(inFlight))
		}
	}
	done := make(chan result, 1)
	go func() {
		if inFlight != nil {
			defer func() { <-inFlight }()
		}
		v, err := call(ctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// stray reports whether err is a cancellation its caller did not ask for
// (the caller checks its own context first): a client this store retired
// and closed, after swapping in a new one, cancels the dials its waiting
// calls depend on. Such a call may be retried like a transient failure, on
// the new client. (ErrClosing is not: the store itself may be closing.)
func stray(err error) bool { return errors.Is(err, context.Canceled) }

// transient reports whether err may pass by itself: the connection failed
// or timed out, or the cluster was changing. Redirects (MOVED, ASK) are
// followed by the client itself; they reach here only when they did not end.
func transient(err error) bool {
	if errors.Is(err, rueidis.ErrClosing) || errors.Is(err, context.Canceled) || errors.Is(err, ErrNotReplicated) {
		return false
	}
	if rerr, ok := rueidis.IsRedisErr(err); ok {
		if rerr.IsClusterDown() || rerr.IsTryAgain() || rerr.IsLoading() {
			return true
		}
		if _, ok := rerr.IsRedirect(); ok {
			return true
		}
		msg := rerr.Error()
		return strings.HasPrefix(msg, "READONLY") || strings.HasPrefix(msg, "MASTERDOWN")
	}
	// Not an answer from Redis: the connection failed, or the attempt
	// timed out.
	return true
}

// newRequestID returns a random id, 16 characters: unique enough that two
// consumes never share one, short enough to keep log members small.
func newRequestID() string {
	var b [12]byte
	_, _ = cryptorand.Read(b[:]) // never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}
