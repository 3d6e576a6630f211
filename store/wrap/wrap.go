// Package wrap composes tollgate.Store decorators: a deadline on each call,
// an observer of each call (for metrics), and the local over-limit cache
// of package store/overlimit. Chain builds them in the order the service
// uses, so a program that embeds the HTTP API or the Envoy rate limit
// service gets the same store with one call:
//
//	st = wrap.Chain(st, wrap.Options{Timeout: 100 * time.Millisecond, Observer: m, Cache: &overlimit.Options{MaxAge: 10 * time.Second}})
//	lim := tollgate.New(st, tollgate.Options{})
package wrap

import (
	"context"
	"errors"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/overlimit"
)

// Options configures Chain. The zero value wraps nothing.
type Options struct {
	// Timeout bounds each store call (Deadline); 0 means no bound but the
	// caller's.
	Timeout time.Duration
	// Observer, if not nil, is told of each call that reaches the store
	// (Observe), with Kind's classification of its error.
	Observer Observer
	// Kind classifies a failed call for the Observer; nil means "error"
	// for every failure.
	Kind func(error) string
	// Cache, if not nil, puts the local over-limit cache in front of the
	// store, with these options; nil means no cache.
	Cache *overlimit.Options
}

// Chain wraps store as Options say: Limiter → over-limit cache → observer
// → deadline → store. The cache's answers are not store calls, and a call
// that timed out is one.
func Chain(store tollgate.Store, o Options) tollgate.Store {
	if o.Timeout > 0 {
		store = Deadline(store, o.Timeout)
	}
	if o.Observer != nil {
		store = Observe(store, o.Observer, o.Kind)
	}
	if o.Cache != nil {
		store = overlimit.New(store, *o.Cache)
	}
	return store
}

// Deadline bounds each call of store by timeout, so that a store that
// hangs fails as unavailable (the Limiter wraps the context error in
// tollgate.ErrUnavailable) and the caller's failure mode applies, rather
// than the request waiting for its server's write timeout.
func Deadline(store tollgate.Store, timeout time.Duration) tollgate.Store {
	return deadlineStore{store: store, timeout: timeout}
}

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

// Observer is told of every store call: its operation ("consume", "peek",
// "refund" or "reset"), how long it took, and "" or the kind of its error.
// *metrics.Metrics (package server/metrics) implements it. StoreCall must
// be safe for concurrent use and fast.
type Observer interface {
	StoreCall(op string, took time.Duration, errKind string)
}

// Observe reports each call of store to obs, with kind's classification of
// its error (nil: "error"). A call whose caller gave up (its context
// canceled: the client went away) is not reported: it says nothing about
// the store.
func Observe(store tollgate.Store, obs Observer, kind func(error) string) tollgate.Store {
	if kind == nil {
		kind = func(error) string { return "error" }
	}
	return observedStore{store: store, obs: obs, kind: kind}
}

type observedStore struct {
	store tollgate.Store
	obs   Observer
	kind  func(error) string
}

func (s observedStore) Do(ctx context.Context, req tollgate.Request) (tollgate.Decision, error) {
	start := time.Now()
	d, err := s.store.Do(ctx, req)
	s.report(ctx, req.Op.String(), start, err)
	return d, err
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
	kind := ""
	if err != nil {
		kind = s.kind(err)
	}
	s.obs.StoreCall(op, time.Since(start), kind)
}
