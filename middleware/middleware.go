// Package middleware rate-limits a net/http handler with a tollgate.Limiter.
//
//	lim := tollgate.New(store, tollgate.Options{})
//	limit := middleware.New(lim, middleware.Options{Limit: tollgate.PerMinute(60)})
//	http.ListenAndServe(addr, limit(mux))
//
// Each request is charged its cost (Options.Cost, default 1) against its key
// (Options.Key, default the client's IP address) under Options.Limit with
// Limiter.Consume. An allowed request goes on to the next handler, with the
// RateLimit-Policy and RateLimit header fields of the HTTP API (package
// server/header) already set on the response. A denied one is answered 429
// Too Many Requests with the same fields, Retry-After in whole seconds
// (rounded up), and the body
//
//	{"error":{"code":"rate_limited","message":"rate limit exceeded; retry in 2s","retry_after_ms":1500}}
//
// When the check fails (the store is unavailable or slower than
// Options.Timeout, the key cannot be found, the cost is invalid),
// Options.FailureMode decides, as for a policy of the HTTP API: by default
// (fail_closed) FailClosed answers with an error; fail_open lets requests
// through while the store is unavailable (FailOpen); fail_local checks them
// against Options.Fallback, an in-process limiter, meanwhile. Options.OnError
// replaces the handler of failures for custom handling.
//
// # Keys
//
// Each middleware counts in a namespace of its own (Options.Namespace,
// "middleware:" + Options.Name by default; see tollgate.Limiter.Namespace),
// so its keys never share state with other uses of the same Limiter, such
// as the HTTP API's keys or another middleware's.
//
// The default key, ClientIP, is the address of the connection's peer
// (http.Request.RemoteAddr). Behind a reverse proxy or load balancer that
// is the proxy, so every client would share one key: use ClientIPBehind with
// the proxies' addresses, which reads X-Forwarded-For but only as far as the
// proxies vouch for it. X-Forwarded-For is never trusted by default: any
// client can send it, and a limiter keyed by it is no limit at all.
//
// An IPv6 client usually controls a whole /64 (or more): to limit it as
// one, key by its network (see the example of New).
package middleware

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/httpjson"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/server/header"
)

// DefaultTimeout bounds each check when Options.Timeout is 0.
const DefaultTimeout = 100 * time.Millisecond

// DefaultName names the limit in the RateLimit header fields when
// Options.Name is empty, as the HTTP API names inline limits.
const DefaultName = "default"

// HeaderDegraded (header.Degraded) is set to "store-unavailable" by
// FailOpen on the requests it lets through unchecked, and to
// "local-fallback" on those that Options.Fallback checked, as the HTTP API
// does.
const HeaderDegraded = header.Degraded

// ErrKey is wrapped around the error of Options.Key when it fails, so that
// OnError can tell it apart.
var ErrKey = errors.New("middleware: no key for the request")

// Options configures the middleware. Limit is required.
type Options struct {
	// Limit is applied to every request. An invalid Limit (Limit.Validate)
	// makes every check fail with tollgate.ErrInvalidLimit.
	Limit tollgate.Limit
	// Limits, when not empty, are applied instead of Limit, together
	// (tollgate.Limiter.ConsumeAll): a request passes only if it fits every
	// one, and a denied request is charged to none. The RateLimit header
	// fields list each and report the tightest.
	Limits []tollgate.Limit
	// Name names the limit in the RateLimit header fields; "" means
	// DefaultName. It should be printable ASCII; otherwise those fields are
	// left out.
	Name string
	// Namespace is where the middleware's keys live (see
	// tollgate.Limiter.Namespace); "" means "middleware:" + Name, so two
	// middlewares of different names never share a counter.
	Namespace string
	// Key returns the key to charge a request to. A non-nil error (wrapped
	// in ErrKey) goes to OnError; an empty key with no error exempts the
	// request, which goes on unchecked and without RateLimit fields. Nil
	// means ClientIP.
	Key func(*http.Request) (string, error)
	// Cost returns a request's cost, at least 1 and at most Limit.Units;
	// otherwise the check fails with tollgate.ErrInvalidCost or
	// tollgate.ErrCostExceedsLimit. Nil means 1 for every request.
	Cost func(*http.Request) int64
	// Timeout bounds each check; past it the check fails with
	// tollgate.ErrUnavailable. 0 means DefaultTimeout; a negative value
	// means no bound but the request's own context.
	Timeout time.Duration
	// FailureMode says how to answer while the store is unavailable (the
	// check failed with tollgate.ErrUnavailable, a timeout included). The
	// zero value, policy.FailClosed, refuses the request (FailClosed);
	// policy.FailOpen lets it through unchecked (FailOpen); policy.FailLocal
	// checks it against Fallback instead, with the request's own context,
	// and marks the response with HeaderDegraded "local-fallback" (without a
	// Fallback, as fail_closed). OnError, when set, handles the failures
	// instead, except those the Fallback answers.
	FailureMode policy.FailureMode
	// Fallback is the Limiter of FailureMode policy.FailLocal; it should sit
	// on an in-process store (store/memory), so that each instance limits
	// on its own while the store is unavailable. Its keys are in Namespace,
	// as the store's. Nil makes fail_local act as fail_closed.
	Fallback *tollgate.Limiter
	// OnError handles a request whose check failed with err (and that the
	// Fallback did not answer): it returns true to send the request on to
	// the next handler (fail open), or writes a response and returns false.
	// Nil means FailOpen for FailureMode policy.FailOpen, else FailClosed.
	OnError func(w http.ResponseWriter, r *http.Request, err error) (pass bool)
}

// New returns middleware that checks every request against l as described
// in the package documentation. l must not be nil.
func New(l *tollgate.Limiter, opts Options) func(http.Handler) http.Handler {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.Key == nil {
		opts.Key = ClientIP
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.OnError == nil {
		opts.OnError = FailClosed
		if opts.FailureMode == policy.FailOpen {
			opts.OnError = FailOpen
		}
	}
	if opts.Namespace == "" {
		opts.Namespace = "middleware:" + opts.Name
	}
	if len(opts.Limits) == 0 {
		opts.Limits = []tollgate.Limit{opts.Limit}
	}
	l = l.Namespace(opts.Namespace)
	var fallback *tollgate.Limiter
	if opts.FailureMode == policy.FailLocal && opts.Fallback != nil {
		fallback = opts.Fallback.Namespace(opts.Namespace)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key, err := opts.Key(r)
			if err != nil {
				if opts.OnError(w, r, fmt.Errorf("%w: %w", ErrKey, err)) {
					next.ServeHTTP(w, r)
				}
				return
			}
			if key == "" {
				next.ServeHTTP(w, r)
				return
			}
			cost := int64(1)
			if opts.Cost != nil {
				cost = opts.Cost(r)
			}
			ctx := r.Context()
			if opts.Timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
				defer cancel()
			}
			d, err := l.ConsumeAll(ctx, key, cost, opts.Limits...)
			if err != nil && fallback != nil && errors.Is(err, tollgate.ErrUnavailable) {
				// The store's deadline may have passed: the request's own.
				if d, err = fallback.ConsumeAll(r.Context(), key, cost, opts.Limits...); err == nil {
					w.Header().Set(HeaderDegraded, header.DegradedLocalFallback)
				}
			}
			if err != nil {
				if opts.OnError(w, r, err) {
					next.ServeHTTP(w, r)
				}
				return
			}
			header.SetAll(w.Header(), opts.Name, opts.Limits, d, !d.Allowed)
			if !d.Allowed {
				denied(w, d.RetryAfter)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Error codes of the JSON bodies the middleware writes, as in the HTTP API.
const (
	CodeRateLimited      = "rate_limited"
	CodeUnavailable      = "unavailable"
	CodeInvalidKey       = "invalid_key"
	CodeInvalidCost      = "invalid_cost"
	CodeCostExceedsLimit = "cost_exceeds_limit"
	CodeInternal         = "internal"
)

// FailClosed is the default Options.OnError: it refuses the request with a
// JSON error body {"error":{"code":"…","message":"…"}}: 503 unavailable
// when the store failed or timed out, 400 invalid_key, invalid_cost or
// cost_exceeds_limit when the key or cost is unusable, and 500 internal
// otherwise (an invalid Limit).
func FailClosed(w http.ResponseWriter, _ *http.Request, err error) bool {
	switch {
	case errors.Is(err, tollgate.ErrUnavailable):
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "rate limit store unavailable", 0)
	case errors.Is(err, ErrKey), errors.Is(err, tollgate.ErrInvalidKey):
		writeError(w, http.StatusBadRequest, CodeInvalidKey, "cannot identify the client for rate limiting", 0)
	case errors.Is(err, tollgate.ErrInvalidCost):
		writeError(w, http.StatusBadRequest, CodeInvalidCost, "invalid request cost", 0)
	case errors.Is(err, tollgate.ErrCostExceedsLimit):
		writeError(w, http.StatusBadRequest, CodeCostExceedsLimit, "request cost exceeds the rate limit", 0)
	default:
		writeError(w, http.StatusInternalServerError, CodeInternal, "rate limit check failed", 0)
	}
	return false
}

// FailOpen is an Options.OnError that lets a request through unchecked when
// the store failed or timed out, marking the response with HeaderDegraded;
// other errors it refuses as FailClosed does.
func FailOpen(w http.ResponseWriter, r *http.Request, err error) bool {
	if errors.Is(err, tollgate.ErrUnavailable) {
		w.Header().Set(HeaderDegraded, header.DegradedStoreUnavailable)
		return true
	}
	return FailClosed(w, r, err)
}

// ClientIP returns the IP address of the connection's peer, from
// RemoteAddr, in canonical form (IPv4-mapped IPv6 addresses as IPv4, no
// zone). It ignores X-Forwarded-For and every other header. It is the
// default Options.Key.
func ClientIP(r *http.Request) (string, error) {
	addr, err := parseAddr(r.RemoteAddr)
	if err != nil {
		return "", fmt.Errorf("remote address %.64q: %w", r.RemoteAddr, err)
	}
	return addr.String(), nil
}

// ClientIPBehind returns an Options.Key for a server behind reverse proxies
// or load balancers whose addresses are in trusted. When the peer is not
// trusted, it is the client, as in ClientIP. Otherwise the client is taken
// from X-Forwarded-For (all its lines, in order): the rightmost address that
// is not trusted, since each trusted proxy appends the address it got the
// request from, while anything left of that may be forged by the client. If
// every address is trusted, the leftmost is the client. An entry that is not
// an IP address (with or without a port) where the client should be is an
// error.
func ClientIPBehind(trusted ...netip.Prefix) func(*http.Request) (string, error) {
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	return func(r *http.Request) (string, error) {
		peer, err := parseAddr(r.RemoteAddr)
		if err != nil {
			return "", fmt.Errorf("remote address %.64q: %w", r.RemoteAddr, err)
		}
		if !isTrusted(peer) {
			return peer.String(), nil
		}
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		client := peer
		for i := len(hops) - 1; i >= 0; i-- {
			hop := strings.TrimSpace(hops[i])
			if hop == "" {
				continue
			}
			a, err := parseAddr(hop)
			if err != nil {
				return "", fmt.Errorf("X-Forwarded-For entry %.64q: %w", hop, err)
			}
			client = a
			if !isTrusted(a) {
				break
			}
		}
		return client.String(), nil
	}
}

// parseAddr parses an IP address, with or without a port, brackets or zone,
// and returns it in canonical form.
func parseAddr(s string) (netip.Addr, error) {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, errors.New("not an IP address")
	}
	return a.Unmap().WithZone(""), nil
}

// denied answers a denied request: 429 with a JSON body (the RateLimit and
// Retry-After fields are set).
func denied(w http.ResponseWriter, retry time.Duration) {
	ms := header.Ceil(retry, time.Millisecond)
	msg := "rate limit exceeded; retry in " + w.Header().Get(header.RetryAfter) + "s"
	writeError(w, http.StatusTooManyRequests, CodeRateLimited, msg, ms)
}

func writeError(w http.ResponseWriter, status int, code, message string, retryAfterMS int64) {
	httpjson.WriteError(w, status, code, message, retryAfterMS)
}
