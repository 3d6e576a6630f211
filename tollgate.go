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
// # State
//
// Usage belongs to (namespace, key, algorithm, window): a Limit's Units are
// not part of it, so raising a plan's limit keeps its customers' usage,
// while a call that names another window or algorithm sees and changes
// state of its own. No call changes usage that a call with a different
// window, algorithm, key or namespace observes, and Peek changes nothing
// that a later call can see. Every piece of state expires by itself once
// its last unit has left its window, so a key that is no longer used leaves
// nothing behind (see the stores for the details).
//
// Namespaces (Limiter.Namespace) keep the key spaces of different users of
// one store apart: no key in one namespace can read or change usage in
// another, whatever bytes it holds.
//
// A call may name several limits of one key, such as 10 per second, 1,000
// per hour and 20,000 per day (ConsumeAll): it is allowed only if the cost
// fits every limit, and a denied call records nothing in any of them. All
// limits of a key live together in the store (one Redis hash slot), so the
// check stays one atomic operation and one round trip.
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
	"strings"
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
	// ErrInvalidLimits: a call names no limit, more than MaxLimits, or two
	// limits with the same Algorithm and Window (they would share state).
	// It wraps ErrInvalidLimit.
	ErrInvalidLimits = fmt.Errorf("%w: bad set of limits", ErrInvalidLimit)
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
	// MaxLimits is the most limits one call may name.
	MaxLimits = 8
	// DefaultMaxLogEntries bounds a sliding log when Options.MaxLogEntries
	// is 0: up to it the log is exact; past it, entries coalesce (see
	// Options.MaxLogEntries). Chosen by measurement (BENCHMARKS.md): a check
	// on a key at the bound costs Redis well under a millisecond, and the
	// log's sorted set keeps Redis's compact encoding (at most 128 entries).
	DefaultMaxLogEntries = 128
	// MinLogEntries is the smallest Options.MaxLogEntries.
	MinLogEntries = 2
	// MaxDedupeIDs is the most request ids a key remembers (within the
	// dedupe window); past it the oldest are forgotten first. It bounds a
	// hot key's memory: a repeat is recognised if it comes within the dedupe
	// window and fewer than MaxDedupeIDs other ids were recorded on the key
	// since.
	MaxDedupeIDs = 1000
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

// Decision is the outcome of a call that names several limits.
type Decision struct {
	// Allowed reports whether the cost fits every limit; for a consume,
	// whether it was recorded in all of them.
	Allowed bool
	// RetryAfter is 0 when Allowed; otherwise the latest RetryAfter of the
	// limits that deny.
	RetryAfter time.Duration
	// Results holds each limit's figures, in the order the limits were
	// given. A limit that denies has Allowed false.
	Results []Result
}

// Tightest returns the index in Results of the limit that decides: when
// denied, the denying limit with the latest RetryAfter; otherwise the one
// with the fewest units remaining (the first of equals). It is the limit a
// single RateLimit header should describe.
func (d Decision) Tightest() int {
	best := 0
	for i, r := range d.Results {
		b := d.Results[best]
		switch {
		case !d.Allowed && !r.Allowed && (b.Allowed || r.RetryAfter > b.RetryAfter):
			best = i
		case d.Allowed && r.Remaining < b.Remaining:
			best = i
		}
	}
	return best
}

// Request is one validated operation on one key, as the Limiter hands it to a
// Store.
type Request struct {
	Op Op
	// Key identifies the state: the caller's key in its namespace, made
	// unambiguous by the Limiter (see Limiter.Namespace). A store may treat
	// it as opaque bytes.
	Key string
	// Limits are 1 to MaxLimits valid limits, no two with the same
	// Algorithm and Window.
	Limits []Limit
	// Cost is at least 1 and, for OpConsume and OpPeek, at most every
	// limit's Units.
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
	// DedupeWindow is how long an ID is remembered: positive, at most the
	// shortest limit's Window.
	DedupeWindow time.Duration
	// MaxLogEntries bounds each sliding log of the key: at least
	// MinLogEntries (see Options.MaxLogEntries).
	MaxLogEntries int
}

// Store keeps limiter state. Implementations apply each call atomically, to
// all of its limits at once, and must be safe for concurrent use. They may
// assume a Request is valid; the Limiter validates it. Errors other than
// context errors should wrap ErrUnavailable.
type Store interface {
	// Do applies req and returns the Decision as of that instant, with one
	// Result per limit in req.Limits.
	Do(ctx context.Context, req Request) (Decision, error)
	// Reset forgets all state of key (a Request.Key), for every algorithm
	// and window.
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
	// at the shortest limit's window. 0 means DefaultDedupeWindow.
	DedupeWindow time.Duration
	// MaxLogEntries bounds the entries of one key's sliding log, and so its
	// memory and the cost of a check. Below the bound the log is exact: one
	// entry per allowed request. At the bound, an allowed request's units
	// coalesce with a neighbouring entry that falls in the same slot of
	// width ceil(Window/(MaxLogEntries-1)): a coalesced group counts as
	// allowed at the latest instant of its group, so its units leave the
	// window later than exact by less than one slot, never earlier, and no
	// window ever holds more than the limit. 0 means DefaultMaxLogEntries;
	// values below MinLogEntries mean MinLogEntries.
	MaxLogEntries int
	// Namespace is the Limiter's namespace (see Limiter.Namespace); "" is
	// a namespace of its own like any other.
	Namespace string
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
// state of a key is shared by every Limit of the same Algorithm and Window
// used with it in the Limiter's namespace.
type Limiter struct {
	store     Store
	now       func() time.Time
	maxKeyLen int
	dedupe    time.Duration
	maxLog    int
	ns        string // the namespace, escaped, with its separator
}

// New returns a Limiter over store.
func New(store Store, opts Options) *Limiter {
	if opts.MaxKeyLen <= 0 {
		opts.MaxKeyLen = DefaultMaxKeyLen
	}
	if opts.DedupeWindow <= 0 {
		opts.DedupeWindow = DefaultDedupeWindow
	}
	if opts.MaxLogEntries == 0 {
		opts.MaxLogEntries = DefaultMaxLogEntries
	}
	l := &Limiter{store: store, now: opts.Now, maxKeyLen: opts.MaxKeyLen, dedupe: opts.DedupeWindow,
		maxLog: max(MinLogEntries, opts.MaxLogEntries)}
	return l.Namespace(opts.Namespace)
}

// Namespace returns a Limiter with l's store and options whose keys live in
// namespace ns: a key K in ns and the same K in any other namespace are
// different state, and no key of one namespace, whatever bytes it holds,
// names state of another. Reset, too, forgets a key in ns only. It is cheap
// enough to call per request.
func (l *Limiter) Namespace(ns string) *Limiter {
	c := *l
	c.ns = StoreKey(ns, "")
	return &c
}

// StoreKey returns the Request.Key under which a Limiter in namespace ns
// keeps key: the namespace with '%' and ':' escaped (as %25 and %3A), a
// ':', then key. The first ':' ends the namespace, so no two (namespace,
// key) pairs share a StoreKey. It is for tools that inspect a store's
// state (such as store/redis's Store.Key); Limiters build it themselves.
func StoreKey(ns, key string) string { return nsEscaper.Replace(ns) + ":" + key }

var nsEscaper = strings.NewReplacer("%", "%25", ":", "%3A")

// Consume records cost units against key if they fit: it is allowed iff the
// units already used in the window plus cost are at most limit.Units. An
// allowed call records cost; a denied call records nothing.
//
// It fails with ErrInvalidKey, ErrInvalidCost, ErrInvalidLimit or
// ErrCostExceedsLimit without touching the store, and with ErrUnavailable
// when the store cannot answer; then the cost may or may not have been
// recorded.
func (l *Limiter) Consume(ctx context.Context, key string, cost int64, limit Limit) (Result, error) {
	return one(l.do(ctx, OpConsume, key, cost, []Limit{limit}))
}

// Peek reports the figures Consume would see for a cost of 1, recording
// nothing. Errors are as for Consume.
func (l *Limiter) Peek(ctx context.Context, key string, limit Limit) (Result, error) {
	return one(l.do(ctx, OpPeek, key, 1, []Limit{limit}))
}

// Refund gives back up to cost units still counted in the window, newest
// first (for SlidingLog: the most recently allowed requests' units), for a
// request that turned out not to need them. Used never falls below 0. The
// Result's Allowed and RetryAfter describe a cost of 1 afterwards.
//
// Errors are as for Consume, except that a cost above limit.Units is allowed.
func (l *Limiter) Refund(ctx context.Context, key string, cost int64, limit Limit) (Result, error) {
	return one(l.do(ctx, OpRefund, key, cost, []Limit{limit}))
}

// ConsumeAll records cost against every one of limits if it fits all of
// them, atomically: when any limit denies, nothing is recorded in any. The
// Decision gives each limit's figures; RetryAfter is the latest of the
// denying limits'. Each limit keeps its own state, shared with the single
// calls that name the same Algorithm and Window.
//
// Besides the errors of Consume (cost above any limit's Units is
// ErrCostExceedsLimit), it fails with ErrInvalidLimits when limits is empty,
// longer than MaxLimits, or names one Algorithm and Window twice.
func (l *Limiter) ConsumeAll(ctx context.Context, key string, cost int64, limits ...Limit) (Decision, error) {
	return l.do(ctx, OpConsume, key, cost, limits)
}

// PeekAll reports the figures ConsumeAll would see for a cost of 1,
// recording nothing. Errors are as for ConsumeAll.
func (l *Limiter) PeekAll(ctx context.Context, key string, limits ...Limit) (Decision, error) {
	return l.do(ctx, OpPeek, key, 1, limits)
}

// RefundAll gives back up to cost units to each of limits, as Refund does
// to one. Errors are as for ConsumeAll, except that a cost above a limit's
// Units is allowed.
func (l *Limiter) RefundAll(ctx context.Context, key string, cost int64, limits ...Limit) (Decision, error) {
	return l.do(ctx, OpRefund, key, cost, limits)
}

// Reset forgets all usage of key in the Limiter's namespace, for every
// algorithm and window. It fails with ErrInvalidKey or ErrUnavailable.
func (l *Limiter) Reset(ctx context.Context, key string) error {
	if err := l.checkKey(key); err != nil {
		return err
	}
	return unavailable(l.store.Reset(ctx, l.ns+key))
}

func one(d Decision, err error) (Result, error) {
	if err != nil {
		return Result{}, err
	}
	return d.Results[0], nil
}

func (l *Limiter) do(ctx context.Context, op Op, key string, cost int64, limits []Limit) (Decision, error) {
	if err := l.checkKey(key); err != nil {
		return Decision{}, err
	}
	if cost < 1 {
		return Decision{}, fmt.Errorf("%w: %d (want at least 1)", ErrInvalidCost, cost)
	}
	if len(limits) == 0 || len(limits) > MaxLimits {
		return Decision{}, fmt.Errorf("%w: %d limits (want 1 to %d)", ErrInvalidLimits, len(limits), MaxLimits)
	}
	dedupe := l.dedupe
	for i, limit := range limits {
		if err := limit.Validate(); err != nil {
			return Decision{}, err
		}
		if op != OpRefund && cost > limit.Units {
			return Decision{}, fmt.Errorf("%w: cost %d, limit %d", ErrCostExceedsLimit, cost, limit.Units)
		}
		for _, prev := range limits[:i] {
			if prev.Algorithm == limit.Algorithm && prev.Window == limit.Window {
				return Decision{}, fmt.Errorf("%w: %s and %s share their state", ErrInvalidLimits, prev, limit)
			}
		}
		dedupe = min(dedupe, limit.Window)
	}
	req := Request{Op: op, Key: l.ns + key, Limits: limits, Cost: cost, DedupeWindow: dedupe, MaxLogEntries: l.maxLog}
	if op == OpConsume {
		req.ID = RequestID(ctx)
		if len(req.ID) > MaxRequestIDLen {
			return Decision{}, fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalidRequestID, len(req.ID), MaxRequestIDLen)
		}
	}
	if l.now != nil {
		req.Now = l.now()
	}
	d, err := l.store.Do(ctx, req)
	if err == nil && len(d.Results) != len(limits) {
		err = fmt.Errorf("%w: the store answered %d results for %d limits", ErrUnavailable, len(d.Results), len(limits))
	}
	return d, unavailable(err)
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
