// Package rls serves a tollgate.Limiter as Envoy's rate limit service
// (envoy.service.ratelimit.v3.RateLimitService) over gRPC, with rules in
// envoyproxy/ratelimit's descriptor format (package config), so that an
// Envoy configured for envoyproxy/ratelimit can use Tollgate unchanged.
//
// # Requests
//
// A request names a domain and lists descriptors, each a list of key/value
// entries. For each descriptor the Server asks its Rules for a rule
// (a policy.Rule; config.EnvoyConfig.Match describes the matching) and
// then:
//
//   - no rule, or a rule whose name another matched rule of the request
//     replaces: OK, with no current limit;
//   - an unlimited rule: OK, with LimitRemaining 2^32-1;
//   - otherwise it charges the descriptor's hits to the rule's key with
//     Limiter.Consume: OK if they fit, else OVER_LIMIT. The hits are the
//     descriptor's own hits_addend when set (0 is allowed), else the
//     request's hits_addend, where 0 means 1.
//
// Hits above the rule's requests per unit can never fit: the descriptor is
// OVER_LIMIT and nothing is charged (the figures come from Limiter.Peek).
// Zero hits charge nothing either; the descriptor is OVER_LIMIT only if the
// units in use already exceed the limit (after a limit was lowered), as in
// envoyproxy/ratelimit. A rule of requests_per_unit 0 is OVER_LIMIT without
// touching the store. The descriptors of a request are checked
// concurrently (so that a Redis store pipelines them), under one deadline
// (Options.Timeout), and each that fits is charged even when another is
// over its limit, as in envoyproxy/ratelimit. A request of more than
// Options.MaxDescriptors descriptors is InvalidArgument and checks none.
//
// A rule with stop_charging_when_over keeps no hits of a request in which
// any descriptor is over its limit: as the descriptors are checked at once,
// its hits are charged and then refunded (envoyproxy/ratelimit, checking in
// order, does not charge those after the one over; here "not charged after"
// becomes "refunded", wherever the one over comes). Its status shows the
// figures of the charge. Between the charge and the refund another request
// may see the hits; the refund restores the count, not the instant.
//
// A rule in shadow mode never denies: its descriptor reports OK even when
// over the limit (with the true LimitRemaining), as envoyproxy/ratelimit
// does. The overall code is OVER_LIMIT if any descriptor is, else OK.
//
// # Statuses
//
// A checked descriptor's status carries the rule as CurrentLimit: Name,
// RequestsPerUnit (the rule's units, at most 2^32-1) and the window as Unit
// plus UnitMultiplier: the largest of month (30 days), week, day, hour,
// minute and second that divides the window, with UnitMultiplier set only
// when it is not 1 (so a 90s window is 90 × SECOND, 2h is 2 × HOUR); a
// window that is not a whole number of seconds has Unit UNKNOWN.
// LimitRemaining is the Result's Remaining (at most 2^32-1) and
// DurationUntilReset its ResetAfter, rounded up to whole seconds, as
// envoyproxy/ratelimit sends whole seconds and Envoy reads seconds only.
//
// # Errors
//
// An empty domain or descriptor list is InvalidArgument. When the store is
// unavailable, a descriptor is answered by its rule's failure mode
// (policy.Rule.FailureMode), or by Options.FailureMode for a rule that
// fails closed (the default):
//
//   - fail_closed: the whole request fails with Unavailable;
//   - fail_open: OK for that descriptor (CurrentLimit set, no
//     LimitRemaining or DurationUntilReset), and the Server goes on;
//   - fail_local: the descriptor is checked against Options.Fallback, an
//     in-process limiter, as it would have been against the store (without
//     a Fallback, as fail_closed).
//
// A cancelled or expired
// request context gives Canceled or DeadlineExceeded. Any other Limiter
// error (for example a key longer than the Limiter's MaxKeyLen) is Internal.
//
// An Options.Observer is told the outcome of every descriptor checked
// against a rule, by rule name (or domain), for metrics.
package rls

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"runtime/debug"
	"sync"
	"time"

	rlspb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/server/header"
	"github.com/tollgate/tollgate/server/observe"
)

// Rules finds the rule for a request descriptor. *config.EnvoyConfig and
// *config.EnvoyHolder (which follows reloads) implement it. Match must be
// safe for concurrent use.
type Rules interface {
	// Match returns the rule for entries in domain and whether one applies.
	Match(domain string, entries []policy.Entry) (policy.Rule, bool)
}

// Options configures a Server. The zero value is ready to use.
type Options struct {
	// FailureMode is how a descriptor whose rule fails closed (the
	// default) is answered while the store is unavailable; a rule with
	// failure_mode fail_open or fail_local keeps its own. The zero value,
	// policy.FailClosed, fails the whole request with gRPC code Unavailable,
	// so that Envoy applies its own failure_mode_deny setting;
	// policy.FailOpen counts the descriptor as OK; policy.FailLocal checks
	// it against Fallback.
	FailureMode policy.FailureMode
	// Fallback answers the descriptors of fail_local rules while the store
	// is unavailable; it should sit on an in-process store (store/memory),
	// so that each instance then limits on its own. Its keys are in
	// Namespace, as the store's. Nil makes fail_local act as fail_closed.
	Fallback *tollgate.Limiter
	// Logger receives store failures at Warn (with the domain and rule name,
	// never descriptor values), unexpected errors at Error, and one record
	// per checked descriptor at Debug (with the key). Nothing is logged per
	// request at Info. Nil discards.
	Logger *slog.Logger
	// Reflection makes Register register gRPC server reflection too, so
	// that tools such as grpcurl can list and call the services without
	// their protos. False (the default) leaves it off: it tells any
	// client the whole API surface.
	Reflection bool
	// MaxDescriptors is the most descriptors one request may carry; more
	// is InvalidArgument, before any is checked. 0 means
	// DefaultMaxDescriptors; negative, no cap.
	MaxDescriptors int
	// Timeout is one deadline for all the store calls of a request, which
	// run concurrently (so that Redis pipelines them); past it, each
	// unanswered descriptor gets its rule's failure mode. The refunds of
	// stop_charging_when_over get a deadline of the same length. 0 means
	// none but the caller's and the store's own.
	Timeout time.Duration
	// Observer is told the outcome of every descriptor checked against a
	// rule (unmatched, unlimited and replaced descriptors are not checks):
	// policy is the rule's name, or the request's domain when the rule has
	// none; result is observe.ResultAllowed, ResultDenied (OVER_LIMIT),
	// ResultShadowDenied (over the limit of a shadow rule, so OK),
	// ResultError (the check failed and so did the call) or ResultFailOpen
	// (the store failed, so OK). A descriptor the Fallback answered is
	// allowed or denied. Nil reports nothing.
	Observer observe.Observer
}

// Namespace is the namespace (tollgate.Limiter.Namespace) of the Envoy
// rules' keys: a rule's key names its domain and descriptor entries,
// escaped, so no two domains or descriptor chains share a counter, and no
// key of the HTTP API or the middleware sharing the Limiter reaches one.
const Namespace = "rls"

// DefaultMaxDescriptors is the most descriptors a request may carry when
// Options.MaxDescriptors is 0. Envoy sends one per matching rate_limits
// action, a handful in practice.
const DefaultMaxDescriptors = 64

// Server implements rlspb.RateLimitServiceServer over a Limiter. It is safe
// for concurrent use.
type Server struct {
	rlspb.UnimplementedRateLimitServiceServer

	lim      *tollgate.Limiter
	fallback *tollgate.Limiter // for fail_local rules; may be nil
	rules    Rules
	mode     policy.FailureMode
	log      *slog.Logger
	observer observe.Observer
	maxDescs int // 0: no cap
	reflect  bool
	timeout  time.Duration
}

// New returns a Server that checks descriptors matched by rules against lim.
// lim must not be nil; nil rules match nothing, so every request is OK.
func New(lim *tollgate.Limiter, rules Rules, opts Options) *Server {
	s := &Server{lim: lim.Namespace(Namespace), rules: rules, mode: opts.FailureMode, log: opts.Logger, observer: opts.Observer,
		maxDescs: opts.MaxDescriptors, timeout: max(0, opts.Timeout), reflect: opts.Reflection}
	switch {
	case s.maxDescs == 0:
		s.maxDescs = DefaultMaxDescriptors
	case s.maxDescs < 0:
		s.maxDescs = 0
	}
	if opts.Fallback != nil {
		s.fallback = opts.Fallback.Namespace(Namespace)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Register registers the Server on g, with the gRPC health service (its
// returned *health.Server reports SERVING for "" and for the rate limit
// service until the caller changes it, for example with Shutdown before
// g.GracefulStop) and, with Options.Reflection, server reflection. Call it once per grpc.Server, before
// g.Serve.
func (s *Server) Register(g *grpc.Server) *health.Server {
	rlspb.RegisterRateLimitServiceServer(g, s)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(rlspb.RateLimitService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	if s.reflect {
		reflection.Register(g)
	}
	return hs
}

// ShouldRateLimit answers one request as described in the package
// documentation.
func (s *Server) ShouldRateLimit(ctx context.Context, req *rlspb.RateLimitRequest) (*rlspb.RateLimitResponse, error) {
	domain := req.GetDomain()
	if domain == "" {
		return nil, status.Error(codes.InvalidArgument, "rate limit domain must not be empty")
	}
	ds := req.GetDescriptors()
	if len(ds) == 0 {
		return nil, status.Error(codes.InvalidArgument, "rate limit descriptor list must not be empty")
	}
	if s.maxDescs > 0 && len(ds) > s.maxDescs {
		return nil, status.Errorf(codes.InvalidArgument, "%d rate limit descriptors: at most %d per request", len(ds), s.maxDescs)
	}

	// Match every descriptor first: a rule may replace one matched earlier.
	rules := make([]policy.Rule, len(ds))
	matched := make([]bool, len(ds))
	var replaced map[string]bool
	if s.rules != nil {
		for i, d := range ds {
			es := d.GetEntries()
			entries := make([]policy.Entry, len(es))
			for j, e := range es {
				entries[j] = policy.Entry{Key: e.GetKey(), Value: e.GetValue()}
			}
			rules[i], matched[i] = s.rules.Match(domain, entries)
			for _, name := range rules[i].Replaces {
				if replaced == nil {
					replaced = make(map[string]bool)
				}
				replaced[name] = true
			}
		}
	}

	resp := &rlspb.RateLimitResponse{
		OverallCode: rlspb.RateLimitResponse_OK,
		Statuses:    make([]*rlspb.RateLimitResponse_DescriptorStatus, len(ds)),
	}
	// One deadline for every store call of the request; failure modes and
	// the fallback answer under the request's own context.
	storeCtx, cancel := ctx, context.CancelFunc(func() {})
	if s.timeout > 0 {
		storeCtx, cancel = context.WithTimeout(ctx, s.timeout)
	}
	defer cancel()
	charged := make([]charge, len(ds)) // hits to refund, for stop_charging_when_over
	errs := make([]error, len(ds))
	results := make([]string, len(ds)) // for the Observer, reported in request order
	var wg sync.WaitGroup
	for i, d := range ds {
		r := rules[i]
		switch {
		case !matched[i]:
			resp.Statuses[i] = &rlspb.RateLimitResponse_DescriptorStatus{Code: rlspb.RateLimitResponse_OK}
		case r.Unlimited:
			resp.Statuses[i] = &rlspb.RateLimitResponse_DescriptorStatus{Code: rlspb.RateLimitResponse_OK, LimitRemaining: math.MaxUint32}
		case r.Name != "" && replaced[r.Name]:
			resp.Statuses[i] = &rlspb.RateLimitResponse_DescriptorStatus{Code: rlspb.RateLimitResponse_OK}
		default:
			n := hits(req, d.GetHitsAddend())
			wg.Go(func() {
				defer s.recoverPanic(ctx, &errs[i])
				st, on, err := s.check(ctx, storeCtx, domain, r, n, func(result string) { results[i] = result })
				resp.Statuses[i], errs[i] = st, err
				if on != nil && r.StopChargingWhenOver {
					charged[i] = charge{n: n, on: on}
				}
			})
		}
	}
	wg.Wait()
	for i, result := range results {
		if result != "" {
			s.observe(domain, rules[i], result)
		}
	}
	for i, err := range errs {
		if err != nil {
			return nil, err
		}
		if resp.Statuses[i].GetCode() == rlspb.RateLimitResponse_OVER_LIMIT {
			resp.OverallCode = rlspb.RateLimitResponse_OVER_LIMIT
		}
	}
	if resp.OverallCode == rlspb.RateLimitResponse_OVER_LIMIT {
		s.refundCharged(ctx, domain, rules, charged)
	}
	return resp, nil
}

// recoverPanic, deferred in a goroutine that checks a descriptor, turns
// its panic (in the store, say) into an Internal error in *err, logged once
// with its stack and told to an Observer that is an observe.PanicObserver,
// so that it cannot take the process down: no interceptor sees the
// goroutines a handler starts.
func (s *Server) recoverPanic(ctx context.Context, err *error) {
	p := recover()
	if p == nil {
		return
	}
	s.log.LogAttrs(ctx, slog.LevelError, "panic checking a descriptor: answered INTERNAL",
		slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
	if po, ok := s.observer.(observe.PanicObserver); ok {
		po.Panic(observe.ServerGRPC)
	}
	*err = status.Error(codes.Internal, "internal error")
}

// charge is the hits charged to a descriptor and the Limiter (the store's,
// or the fallback) they were charged on.
type charge struct {
	n  uint64
	on *tollgate.Limiter
}

// refundCharged gives back the hits charged to descriptors whose rules stop
// charging when another descriptor of the request is over its limit. A
// refund that fails is logged: the hits then stay counted, as without the
// option.
//
// The refunds run concurrently, under a deadline of their own (the
// Server's timeout), so they bound the request's time as the checks do.
func (s *Server) refundCharged(ctx context.Context, domain string, rules []policy.Rule, charged []charge) {
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		defer cancel()
	}
	var wg sync.WaitGroup
	for i, c := range charged {
		if c.n == 0 {
			continue
		}
		wg.Go(func() {
			var perr error
			defer s.recoverPanic(ctx, &perr)
			if _, err := c.on.Refund(ctx, rules[i].Key, int64(c.n), rules[i].Limit); err != nil {
				s.log.LogAttrs(ctx, slog.LevelWarn, "refund of a request over another descriptor's limit failed",
					slog.String("domain", domain), slog.String("rule", rules[i].Name), slog.Any("error", err))
			}
		})
	}
	wg.Wait()
}

// hits returns a descriptor's cost: its own hits_addend when set, else the
// request's, where 0 means 1.
func hits(req *rlspb.RateLimitRequest, own *wrapperspb.UInt64Value) uint64 {
	if own != nil {
		return own.GetValue()
	}
	return max(1, uint64(req.GetHitsAddend()))
}

// check applies rule r to n hits and returns the descriptor's status and
// the Limiter the hits were charged on, nil when they were not. The store
// is called under storeCtx (the request's deadline for the store); while it
// is unavailable, a fail_local rule is checked against the fallback
// Limiter, under ctx.
func (s *Server) check(ctx, storeCtx context.Context, domain string, r policy.Rule, n uint64, report func(string)) (*rlspb.RateLimitResponse_DescriptorStatus, *tollgate.Limiter, error) {
	lim := r.Limit
	cur := &rlspb.RateLimitResponse_RateLimit{Name: r.Name, RequestsPerUnit: clamp32(lim.Units)}
	cur.Unit, cur.UnitMultiplier = unitOf(lim.Window)

	var (
		res     tollgate.Result
		over    bool
		charged *tollgate.Limiter
	)
	if lim.Units == 0 { // requests_per_unit: 0 denies all
		res, over = tollgate.Result{ResetAfter: lim.Window}, true
	} else {
		on := s.lim
		var err error
		res, over, err = apply(storeCtx, on, r, n)
		if err != nil && s.local(ctx, r, err) {
			s.log.LogAttrs(ctx, slog.LevelWarn, "store unavailable: answering from the local fallback",
				slog.String("domain", domain), slog.String("rule", r.Name), slog.Any("error", err))
			on = s.fallback
			res, over, err = apply(ctx, on, r, n)
		}
		if err != nil {
			st, ferr := s.failure(ctx, domain, r, cur, err, report)
			return st, nil, ferr
		}
		if n > 0 && n <= uint64(lim.Units) && !over {
			charged = on
		}
	}

	code := rlspb.RateLimitResponse_OK
	switch {
	case over && r.Shadow:
		report(observe.ResultShadowDenied)
	case over:
		code = rlspb.RateLimitResponse_OVER_LIMIT
		report(observe.ResultDenied)
	default:
		report(observe.ResultAllowed)
	}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "descriptor",
			slog.String("domain", domain), slog.String("rule", r.Name), slog.String("key", r.Key),
			slog.String("limit", lim.String()), slog.Uint64("hits", n),
			slog.Bool("over_limit", over), slog.Bool("shadow", r.Shadow), slog.Int64("used", res.Used))
	}
	return &rlspb.RateLimitResponse_DescriptorStatus{
		Code:               code,
		CurrentLimit:       cur,
		LimitRemaining:     clamp32(res.Remaining),
		DurationUntilReset: &durationpb.Duration{Seconds: header.Ceil(res.ResetAfter, time.Second)},
	}, charged, nil
}

// apply checks n hits against r's limit (of at least 1 unit) on lim and
// reports whether they are over it: it consumes them when they can fit,
// else peeks.
func apply(ctx context.Context, lim *tollgate.Limiter, r policy.Rule, n uint64) (tollgate.Result, bool, error) {
	switch {
	case n == 0:
		res, err := lim.Peek(ctx, r.Key, r.Limit)
		return res, res.Used > res.Limit, err
	case n > uint64(r.Limit.Units):
		res, err := lim.Peek(ctx, r.Key, r.Limit)
		return res, true, err
	}
	res, err := lim.Consume(ctx, r.Key, int64(n), r.Limit)
	return res, !res.Allowed, err
}

// modeOf returns how r is answered while the store is unavailable.
func (s *Server) modeOf(r policy.Rule) policy.FailureMode {
	if r.FailureMode == policy.FailClosed {
		return s.mode
	}
	return r.FailureMode
}

// local reports whether a check of r that failed with err is answered by
// the fallback Limiter.
func (s *Server) local(ctx context.Context, r policy.Rule, err error) bool {
	return s.fallback != nil && s.modeOf(r) == policy.FailLocal &&
		errors.Is(err, tollgate.ErrUnavailable) && ctx.Err() == nil
}

// failure turns a Limiter error into a fail-open status or a gRPC error.
func (s *Server) failure(ctx context.Context, domain string, r policy.Rule, cur *rlspb.RateLimitResponse_RateLimit, err error, report func(string)) (*rlspb.RateLimitResponse_DescriptorStatus, error) {
	if ctxErr := ctx.Err(); ctxErr != nil {
		report(observe.ResultError)
		return nil, status.FromContextError(ctxErr).Err()
	}
	if !errors.Is(err, tollgate.ErrUnavailable) {
		report(observe.ResultError)
		s.log.LogAttrs(ctx, slog.LevelError, "unexpected error",
			slog.String("domain", domain), slog.String("rule", r.Name), slog.Any("error", err))
		return nil, status.Errorf(codes.Internal, "checking a descriptor: %v", err)
	}
	failOpen := s.modeOf(r) == policy.FailOpen
	s.log.LogAttrs(ctx, slog.LevelWarn, "store unavailable",
		slog.String("domain", domain), slog.String("rule", r.Name), slog.Bool("fail_open", failOpen), slog.Any("error", err))
	if failOpen {
		report(observe.ResultFailOpen)
		return &rlspb.RateLimitResponse_DescriptorStatus{Code: rlspb.RateLimitResponse_OK, CurrentLimit: cur}, nil
	}
	report(observe.ResultError)
	return nil, status.Error(codes.Unavailable, "rate limit store unavailable")
}

// observe reports the result of checking a descriptor against r.
func (s *Server) observe(domain string, r policy.Rule, result string) {
	if s.observer == nil {
		return
	}
	name := r.Name
	if name == "" {
		name = domain
	}
	s.observer.Check(name, result)
}

// units are the Envoy units from the longest, as envoyproxy/ratelimit counts
// them (a month is 30 days).
var units = []struct {
	d time.Duration
	u rlspb.RateLimitResponse_RateLimit_Unit
}{
	{30 * 24 * time.Hour, rlspb.RateLimitResponse_RateLimit_MONTH},
	{7 * 24 * time.Hour, rlspb.RateLimitResponse_RateLimit_WEEK},
	{24 * time.Hour, rlspb.RateLimitResponse_RateLimit_DAY},
	{time.Hour, rlspb.RateLimitResponse_RateLimit_HOUR},
	{time.Minute, rlspb.RateLimitResponse_RateLimit_MINUTE},
	{time.Second, rlspb.RateLimitResponse_RateLimit_SECOND},
}

// unitOf expresses a window as the largest unit that divides it and a
// multiplier, nil when 1; UNKNOWN when no unit divides it.
func unitOf(w time.Duration) (rlspb.RateLimitResponse_RateLimit_Unit, *wrapperspb.UInt32Value) {
	for _, u := range units {
		if w >= u.d && w%u.d == 0 {
			n := w / u.d
			if n == 1 {
				return u.u, nil
			}
			return u.u, wrapperspb.UInt32(uint32(min(n, math.MaxUint32)))
		}
	}
	return rlspb.RateLimitResponse_RateLimit_UNKNOWN, nil
}

func clamp32(n int64) uint32 {
	return uint32(max(0, min(n, math.MaxUint32)))
}
