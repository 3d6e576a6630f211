// Package tollgate limits how many cost units each key may use per rolling
// window, atomically, over a shared Store.
//
// A Limiter checks requests against a Limit (Units per Window, counted by an
// Algorithm) for a key such as a customer id. Consume records a request's cost
// only when it fits; Peek reports the same figures without recording; Refund
// gives units back; Reset forgets a key. Each call is one atomic operation in
// the store (one round trip for Redis), so concurrent callers on many hosts
// never overshoot a limit.
//
// Stores: store/memory keeps state in process (the zero-setup default);
// store/redis keeps it in Redis standalone or Cluster, where all instances of
// an application share it. Both implement the same semantics and pass the
// same contract suite (store/storetest).
//
// # Time
//
// Time is kept in whole microseconds. By default a store uses its own clock:
// Redis scripts read the server's TIME, so every application instance shares
// one clock and app-server clock skew cannot move the window. Options.Now
// makes the Limiter pass its caller's clock instead (read once per call),
// which is how tests drive a fake clock.
package tollgate

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Errors returned by this package and its stores wrap one of
// them; test with errors.Is.
var (
	// ErrInvalidKey: the key is empty or longer than the Limiter's MaxKeyLen.
	ErrInvalidKey = errors.New("tollgate: invalid key")
	// ErrInvalidCost: the cost is below 1.
	ErrInvalidCost = errors.New("tollgate: invalid cost")
	// ErrInvalidLimit: the Limit fails Limit.Validate.
	ErrInvalidLimit = errors.New("tollgate: invalid limit")
	// ErrCostExceedsLimit: the cost is above the Limit's Units, so it could
	// never fit. This is an error rather than a deny so that callers do not
	// retry forever.
	ErrCostExceedsLimit = errors.New("tollgate: cost exceeds limit")
	// ErrInvalidRequestID: a request id (WithRequestID) is longer than
	// MaxRequestIDLen.
	ErrInvalidRequestID = errors.New("tollgate: invalid request id")
	// ErrUnavailable: the store could not answer (network, timeout, cluster
	// down, malformed reply). It wraps the cause. Nothing is known about
	// whether a Consume that failed this way was recorded.
	ErrUnavailable = errors.New("tollgate: store unavailable")
)

const (
	// DefaultMaxKeyLen is the longest key, in bytes, when Options.MaxKeyLen
	// is 0.
	DefaultMaxKeyLen = 512
	// MaxRequestIDLen is the longest request id, in bytes.
	MaxRequestIDLen = 128
	// DefaultDedupeWindow is how long a request id is remembered when
	// Options.DedupeWindow is 0.
	DefaultDedupeWindow = 10 * time.Second
)

// Result is the outcome of a call, as of the instant the store applied it.
//
// For a limit of 100 per hour of which 97 units are in use, a Consume of cost
// 5 is denied with Allowed=false, Limit=100, Used=97, Remaining=3, RetryAfter
// the time until enough of the oldest units leave the window for 5 to fit,
// and ResetAfter the time until the newest unit leaves it.
type Result struct {
	// Allowed reports whether the request fits. For Consume, whether its cost
	// was recorded; for Peek and Refund, whether a cost of 1 would fit now.
	Allowed bool
	// Limit is the Limit's Units.
	Limit int64
	// Used is how many units count against the limit after the call. It can
	// exceed Limit when the limit was lowered while units were in use.
	Used int64
	// Remaining is Limit - Used, or 0 when Used exceeds Limit.
	Remaining int64
	// RetryAfter is 0 when Allowed. Otherwise it is how long until the same
	// request (same cost; cost 1 for Peek and Refund) would first fit, if
	// nothing else is consumed meanwhile.
	RetryAfter time.Duration
	// ResetAfter is how long until Used falls to 0, if nothing else is
	// consumed meanwhile; 0 when Used is 0.
	ResetAfter time.Duration
}

// Op is what a Request asks a Store to do.
type Op uint8

const (
	// OpConsume records Cost if it fits.
	OpConsume Op = iota
	// OpPeek reports whether Cost would fit, recording nothing.
	OpPeek
	// OpRefund gives back up to Cost units, newest first.
	OpRefund
)

// String returns "consume", "peek" or "refund".
func (o Op) String() string {
	switch o {
	case OpConsume:
		return "consume"
	case OpPeek:
		return "peek"
	case OpRefund:
		return "refund"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Request is one validated operation on one key, as the Limiter hands it to a
// Store.
type Request struct {
	Op    Op
	Key   string
	Limit Limit
	// Cost is at least 1 and, for OpConsume and OpPeek, at most Limit.Units.
	Cost int64
	// Now is the instant the operation happens at, or the zero Time for the
	// store's own clock.
	Now time.Time
	// ID, for OpConsume, identifies the request: if a consume of the same
	// key, cost and ID was allowed less than DedupeWindow ago (and no refund
	// of the key came since), the store answers with the current figures
	// and Allowed, recording nothing. Empty means no deduplication; a store
	// that retries consumes fills it in itself.
	ID string
	// DedupeWindow is how long an ID is remembered: positive, at most
	// Limit.Window.
	DedupeWindow time.Duration
}

// Store keeps limiter state. Implementations apply each call atomically and
// must be safe for concurrent use. They may assume a Request is valid; the
// Limiter validates it. Errors other than context errors should wrap
// ErrUnavailable.
type Store interface {
	// Do applies req and returns the Result as of that instant.
	Do(ctx context.Context, req Request) (Result, error)
	// Reset forgets all state of key, for every algorithm.
	Reset(ctx context.Context, key string) error
}

// Options configures a Limiter. The zero value is ready to use.
type Options struct {
	// Now, when non-nil, is the clock: it is read once per call and the time
	// passed to the store, which then ignores its own clock. Nil (the
	// default) uses the store's clock, for Redis the server's TIME, so that
	// every application instance shares one clock.
	Now func() time.Time
	// MaxKeyLen is the longest key in bytes; 0 means DefaultMaxKeyLen.
	MaxKeyLen int
	// DedupeWindow is how long a consume's request id is remembered, so
	// that a repeat is not counted twice (see WithRequestID); it is capped
	// at the limit's window. 0 means DefaultDedupeWindow.
	DedupeWindow time.Duration
}

type requestIDKey struct{}

// WithRequestID returns a context carrying id, the request id of the consumes
// made with it: a repeat of a consume with the same key, cost and id within
// the dedupe window (Options.DedupeWindow) returns Allowed and the current
// figures without counting again, so a caller may safely retry a consume
// that failed with ErrUnavailable. Ids are 1 to MaxRequestIDLen bytes; use a
// fresh one per logical request. A refund that gives units back ends the
// deduplication of the key's earlier requests (for SlidingLog: of every
// request allowed at or before the newest one then counted).
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id that ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// A Limiter applies Limits to keys over a Store. It is safe for concurrent
// use. Limits are per call, so one Limiter serves any number of policies; the
// state of a key is shared by every Limit of the same Algorithm used with it.
type Limiter struct {
	store     Store
	now       func() time.Time
	maxKeyLen int
	dedupe    time.Duration
}

// New returns a Limiter over store.
func New(store Store, opts Options) *Limiter {
	if opts.MaxKeyLen <= 0 {
		opts.MaxKeyLen = DefaultMaxKeyLen
	}
	if opts.DedupeWindow <= 0 {
		opts.DedupeWindow = DefaultDedupeWindow
	}
	return &Limiter{store: store, now: opts.Now, maxKeyLen: opts.MaxKeyLen, dedupe: opts.DedupeWindow}
}

// Consume records cost units against key if they fit: it is allowed iff the
// units already used in the window plus cost are at most limit.Units. An
// allowed call records cost; a denied call records nothing.
//
// It fails with ErrInvalidKey, ErrInvalidCost, ErrInvalidLimit or
// ErrCostExceedsLimit without touching the store, and with ErrUnavailable
// when the store cannot answer; then the cost may or may not have been
// recorded.
func (l *Limiter) Consume(ctx context.Context, key string, cost int64, limit Limit) (Result, error) {
	return l.do(ctx, OpConsume, key, cost, limit)
}

// Peek reports the figures Consume would see for a cost of 1, recording
// nothing. Errors are as for Consume.
func (l *Limiter) Peek(ctx context.Context, key string, limit Limit) (Result, error) {
	return l.do(ctx, OpPeek, key, 1, limit)
}

// Refund gives back up to cost units still counted in the window, newest
// first (for SlidingLog: the most recently allowed requests' units), for a
// request that turned out not to need them. Used never falls below 0. The
// Result's Allowed and RetryAfter describe a cost of 1 afterwards.
//
// Errors are as for Consume, except that a cost above limit.Units is allowed.
func (l *Limiter) Refund(ctx context.Context, key string, cost int64, limit Limit) (Result, error) {
	return l.do(ctx, OpRefund, key, cost, limit)
}

// Reset forgets all usage of key, for every algorithm. It fails with
// ErrInvalidKey or ErrUnavailable.
func (l *Limiter) Reset(ctx context.Context, key string) error {
	if err := l.checkKey(key); err != nil {
		return err
	}
	return unavailable(l.store.Reset(ctx, key))
}

func (l *Limiter) do(ctx context.Context, op Op, key string, cost int64, limit Limit) (Result, error) {
	if err := l.checkKey(key); err != nil {
		return Result{}, err
	}
	if cost < 1 {
		return Result{}, fmt.Errorf("%w: %d (want at least 1)", ErrInvalidCost, cost)
	}
	if err := limit.Validate(); err != nil {
		return Result{}, err
	}
	if op != OpRefund && cost > limit.Units {
		return Result{}, fmt.Errorf("%w: cost %d, limit %d", ErrCostExceedsLimit, cost, limit.Units)
	}
	req := Request{Op: op, Key: key, Limit: limit, Cost: cost, DedupeWindow: min(l.dedupe, limit.Window)}
	if op == OpConsume {
		req.ID = RequestID(ctx)
		if len(req.ID) > MaxRequestIDLen {
			return Result{}, fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalidRequestID, len(req.ID), MaxRequestIDLen)
		}
	}
	if l.now != nil {
		req.Now = l.now()
	}
	res, err := l.store.Do(ctx, req)
	return res, unavailable(err)
}

func (l *Limiter) checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > l.maxKeyLen {
		return fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalidKey, len(key), l.maxKeyLen)
	}
	return nil
}

// unavailable makes every store error wrap ErrUnavailable, keeping its cause.
func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
