// Package httpapi serves a tollgate.Limiter over HTTP with JSON bodies.
//
// Endpoints (all bodies are JSON objects; Content-Type is not checked):
//
//	POST /v1/consume  {"key","cost"?, "policy" | "limit","window","algorithm"? | "limits", "request_id"?} → result; 200 allowed, 429 denied
//	POST /v1/peek     {"key",         "policy" | "limit","window","algorithm"? | "limits"} → result; 200 allowed, 429 denied
//	POST /v1/refund   {"key","cost"?, "policy" | "limit","window","algorithm"? | "limits"} → result; always 200
//	POST /v1/reset    {"key","policy"?}                                          → {}; 200
//	POST /v1/batch    {"checks":[consume or peek body, "op"?, …]}                → {"results":[{"status","body"}, …]}; 200 (see Batches)
//	GET  /healthz                                                                → {"status":"ok"}; 200
//	GET  /readyz                                                                 → {"status":"ok"}; 200, or 503 error
//	GET  /metrics                                                                → Options.Metrics' answer; 404 without it
//	GET  /openapi.json                                                           → the OpenAPI document of this API (package api); 200
//
// In requests, "cost" defaults to 1, "limit" is a JSON integer (no fraction
// or exponent), "window" is a Go duration string such as "1h" or "250ms"
// between tollgate.MinWindow and tollgate.MaxWindow, and "algorithm" is one
// of "sliding_log" (the default), "sliding_window" or "gcra". A null field
// counts as absent, and so does an empty "policy" or "algorithm". Field
// names are case-sensitive; unknown fields and data after the object are
// rejected.
//
// # Policies
//
// A request gives either an inline limit ("limit" and "window", and
// optionally "algorithm") or the name of a policy from Options.Policies
// ("policy"), never both: a policy with any of "limit", "window" or
// "algorithm" is invalid_limit, a name that is not a policy
// unknown_policy. A policy's name is looked up per request, so a Policies
// that follows its file (config.Holder) applies reloads at once.
//
// An inline list "limits": [{"limit","window","algorithm"?}, …] (1 to
// tollgate.MaxLimits) and a policy of several limits are checked together
// (tollgate.Limiter.ConsumeAll): allowed only if the cost fits every limit,
// and a denied consume records nothing in any. Their result adds "limits",
// each limit's figures, and its top-level figures and the RateLimit field
// are the tightest limit's; RateLimit-Policy lists every limit (see
// package header).
//
// Each policy counts on its own, in a namespace of its own
// (tollgate.Limiter.Namespace "policy:" + P), and inline limits count in the
// namespace "inline": no key of one, whatever bytes it holds, reads or
// changes usage of another, nor of the Envoy RLS server or the middleware
// sharing the Limiter. Reset with "policy" forgets K under that policy;
// without, the inline K.
//
// A shadow policy decides and reports but never denies: a consume or peek it
// would deny answers 200 with "allowed":true, "shadow_denied":true and the
// header Tollgate-Shadow-Denied: true, keeping the true used, remaining and
// retry_after_ms (what an enforcing policy would have answered). As with any
// denied consume, nothing is recorded. A cost above the policy's units,
// which an enforcing policy rejects as cost_exceeds_limit, is reported the
// same way, with the figures of a peek.
//
// When the store is unavailable (including when it does not answer within
// the deadline the caller puts on the Limiter's store), an inline limit or a
// fail_closed policy answers 503 unavailable. A fail_open policy answers 200
// with the header Tollgate-Degraded: store-unavailable and the body
// {"allowed":true,"limit":100,"degraded":"store-unavailable"} (the usage is
// unknown, so used, remaining and the durations are left out). A fail_local
// policy answers from Options.Fallback, an in-process limiter, with the
// header Tollgate-Degraded: local-fallback (without a Fallback, as
// fail_closed). Reset always fails closed.
//
// # Results and headers
//
// A result is
//
//	{"allowed":true,"limit":100,"used":3,"remaining":97,"retry_after_ms":0,"reset_after_ms":3600000}
//
// with durations in milliseconds rounded up, so a client that waits
// retry_after_ms never retries too early. A 429 also carries a Retry-After
// header in whole seconds, rounded up.
//
// Every result (200 or 429) carries the RateLimit header fields of
// draft-ietf-httpapi-ratelimit-headers-11 (set by package server/header),
// named after the policy, or "default" for an inline limit:
//
//	RateLimit-Policy: "default";q=100;w=3600
//	RateLimit: "default";r=97;t=3600
//
// q is the limit's units and w its window in seconds (left out when the
// window is not a whole number of seconds, as the draft has no sub-second
// windows); r is the remaining units and t, in seconds rounded up, the time
// until usage falls to 0 (a full window when nothing is in use), within
// which a client that uses no more than r units will not be throttled. On a
// 429, t equals Retry-After, as the draft asks that Retry-After not end
// before the effective window. Integers are capped at 999999999999999, the
// largest the Structured Fields syntax allows. A degraded answer carries
// RateLimit-Policy only.
//
// An Options.Observer is told the outcome of every consume (allowed,
// denied, shadow_denied, error or fail_open, by policy), for metrics.
//
// Every response carries X-Request-Id: the request's own when it is 1 to 128
// visible ASCII characters, else a new random one. Log records about a
// request carry it as request_id; RequestID returns it from the request's
// context.
//
// # Batches
//
// POST /v1/batch {"checks":[C, …]} answers 1 to Options.MaxBatchChecks
// (DefaultMaxBatchChecks) checks in one request. Each C is a /v1/consume
// body, or with "op":"peek" a /v1/peek body ("op" "consume", absent or
// null, is a consume), and is answered as that endpoint would answer it:
//
//	{"results":[{"status":200,"body":{"allowed":true,…}},
//	            {"status":429,"body":{"allowed":false,…}},
//	            {"status":503,"body":{"error":{"code":"unavailable",…}}},
//	            {"status":200,"body":{…},"degraded":"local-fallback"}]}
//
// one result per check, in the order of the checks, each with the status
// and body of its own endpoint and "degraded", the Tollgate-Degraded header
// it would have had. The batch itself answers 200 whatever its checks'
// answers; it carries no RateLimit, RateLimit-Policy or Retry-After header
// (they are per check: read the bodies). The checks run concurrently (at
// most 32 at once), so that a Redis client pipelines them: their order of
// application to one key is not defined, and a request_id repeated on one
// key within a batch is invalid_request_id.
//
// A batch is refused as a whole, and nothing is checked or recorded, when
// any of its checks is: every check is validated first (its syntax, then
// every check's scope, then its policy and the Limiter's checks of its key,
// cost, limits and request_id). The error is the one its endpoint would
// answer, with a message starting "checks[I]: ": 400, or 403 when any check
// is outside the token's scope (OpsCheck, the policy, inline limits). More
// than MaxBatchChecks checks is 400 too_many_checks; none is 400
// invalid_json. The body limit (Options.MaxBodyBytes) is the batch's.
// Consumes of a batch are observed one by one, as on /v1/consume.
//
// # Authentication
//
// With Options.APITokens set, every /v1/ request needs the header
// Authorization: Bearer TOKEN with one of them or of Options.AdminTokens;
// otherwise it is 401 unauthorized (with WWW-Authenticate). With
// Options.AdminTokens set, or with APITokens set, /v1/reset needs an admin
// token: a valid non-admin token is 403 forbidden, a missing or unknown one
// 401 (so with APITokens but no AdminTokens, nobody may reset). Tokens are
// compared in constant time. Authentication comes before routing within
// /v1/, so an unauthenticated client learns nothing about the paths there.
//
// Each token has a Scope (Options.ScopedAPITokens, ScopedAdminTokens; a
// bare APITokens entry has APIScope, an AdminTokens entry AdminScope): the
// policies it may name, whether it may send inline limits, and its
// operations (OpsCheck: consume and peek; OpsRefund; OpsAdmin: reset). A
// request outside its scope, or with inline limits when
// Options.PoliciesOnly is set, is 403 forbidden and never reaches the
// Limiter. The scope is checked before the policy is looked up, so an
// out-of-scope token cannot tell which policies exist.
//
// /healthz, /readyz and /metrics need no token: metrics carry policy names
// and counts, never keys, and a scraper should not need a credential that
// can spend quota. Keep the listener off the public internet, or filter
// /metrics in front of it, if even that is too much to show.
//
// # Errors
//
// Every failure has the body {"error":{"code":"…","message":"…"}}, where code
// is one of the Code constants: 400 for bad input (which never touches the
// store), 401 and 403 as above, 404 for an unknown path, 405 with an Allow
// header for a wrong method, 503 when the store or readiness check fails, 500
// otherwise. A panic while serving a request (in the store, say) is
// recovered: the request gets 500 internal, the panic and its stack are
// logged once at Error, an Observer that is an observe.PanicObserver is
// told, and the handler goes on serving.
package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/httpjson"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/server/header"
	"github.com/tollgate/tollgate/server/observe"
)

// DefaultMaxBodyBytes is the largest request body when Options.MaxBodyBytes
// is 0: 64 KiB.
const DefaultMaxBodyBytes = 64 << 10

// Response header fields set by the handler, besides RateLimit-Policy,
// RateLimit and Retry-After.
const (
	// HeaderRequestID carries the request id, both ways.
	HeaderRequestID = "X-Request-Id"
	// HeaderShadowDenied is "true" when a shadow policy would have denied.
	HeaderShadowDenied = "Tollgate-Shadow-Denied"
	// HeaderDegraded (header.Degraded) is "store-unavailable" when a
	// fail_open policy let a request through without the store, and
	// "local-fallback" when a fail_local policy's fallback answered.
	HeaderDegraded = header.Degraded
)

// InlinePolicyName names an inline limit in the RateLimit header fields.
const InlinePolicyName = "default"

// Policies looks up named policies. *config.Config and *config.Holder
// (which follows reloads) implement it. Policy must be safe for concurrent
// use.
type Policies interface {
	// Policy returns the policy called name and whether there is one.
	Policy(name string) (policy.Policy, bool)
}

// Options configures the handler. The zero value is ready to use: no
// policies, no authentication.
type Options struct {
	// Logger receives store and readiness failures at Warn (with the error,
	// never the key), and one record per answered consume, peek, refund or
	// reset at Debug (with the key). Nothing is logged per request at Info.
	// Every record about a request has its request_id. Nil discards.
	Logger *slog.Logger
	// Ready is called by GET /readyz with the request's context; an error
	// makes it answer 503 with code unavailable and the message "store
	// unavailable" (the error itself is logged at Warn, never answered:
	// /readyz needs no token). Nil means always ready.
	Ready func(context.Context) error
	// MaxBodyBytes is the largest request body accepted; 0 (or less) means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Policies resolves the "policy" field of requests. Nil means none: a
	// request naming a policy is unknown_policy.
	Policies Policies
	// APITokens are the bearer tokens that /v1/ requests need. Empty means
	// consume, peek and refund need no token. Empty strings are ignored.
	APITokens []string
	// AdminTokens are bearer tokens good for every /v1/ request, reset
	// included. When AdminTokens or APITokens is set, reset needs one of
	// these. Empty strings are ignored.
	AdminTokens []string
	// ScopedAPITokens are API tokens each limited to its Scope (a token
	// file's lines with scope fields; see ParseScope): like APITokens,
	// their presence makes /v1/ requests need a token. A request outside
	// its token's scope is 403 forbidden and changes nothing.
	ScopedAPITokens []Token
	// ScopedAdminTokens are admin tokens each limited to its Scope, like
	// AdminTokens otherwise.
	ScopedAdminTokens []Token
	// PoliciesOnly refuses inline limits to every request (403 forbidden),
	// whatever its token: callers may use only the operator's policies.
	// False allows them (within each token's scope).
	PoliciesOnly bool
	// Observer is told the outcome of every consume: policy is the
	// policy's name, or observe.InlinePolicy for an inline limit. Nil
	// reports nothing.
	Observer observe.Observer
	// Fallback answers the requests of fail_local policies while the store
	// is unavailable, marked with HeaderDegraded "local-fallback"; it should
	// sit on an in-process store (store/memory). Nil makes fail_local act
	// as fail_closed.
	Fallback *tollgate.Limiter
	// Metrics, if not nil, serves GET /metrics, without a token like
	// /healthz (for example a Prometheus handler). Nil: /metrics is 404.
	Metrics http.Handler
	// MaxBatchChecks is the most checks one POST /v1/batch may carry; 0
	// (or less) means DefaultMaxBatchChecks.
	MaxBatchChecks int
}

type handler struct {
	lim      *tollgate.Limiter
	log      *slog.Logger
	ready    func(context.Context) error
	maxBody  int64
	policies Policies
	tokens   tokens
	observer observe.Observer
	routes   map[string]route
	fallback *tollgate.Limiter // for fail_local policies; may be nil
	noInline bool              // Options.PoliciesOnly
	maxBatch int               // Options.MaxBatchChecks
	dry      *tollgate.Limiter // validates a batch's checks (newDryLimiter)
}

type route struct {
	methods []string // methods served
	allow   string   // the Allow header for any other method
	admin   bool     // needs an admin token when tokens are configured
	serve   func(http.ResponseWriter, *http.Request)
}

// New returns an http.Handler serving l as described in the package
// documentation. l must not be nil.
func New(l *tollgate.Limiter, opts Options) http.Handler {
	h := &handler{
		lim:      l,
		log:      opts.Logger,
		ready:    opts.Ready,
		maxBody:  opts.MaxBodyBytes,
		policies: opts.Policies,
		tokens:   newTokens(opts.APITokens, opts.AdminTokens, opts.ScopedAPITokens, opts.ScopedAdminTokens),
		noInline: opts.PoliciesOnly,
		observer: opts.Observer,
		fallback: opts.Fallback,
		maxBatch: opts.MaxBatchChecks,
		dry:      newDryLimiter(),
	}
	if h.maxBatch <= 0 {
		h.maxBatch = DefaultMaxBatchChecks
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	post := func(f func(http.ResponseWriter, *http.Request)) route {
		return route{methods: []string{http.MethodPost}, allow: http.MethodPost, serve: f}
	}
	get := func(f func(http.ResponseWriter, *http.Request)) route {
		return route{methods: []string{http.MethodGet, http.MethodHead}, allow: "GET, HEAD", serve: f}
	}
	reset := post(h.reset)
	reset.admin = true
	h.routes = map[string]route{
		"/v1/consume": post(h.consume),
		"/v1/peek":    post(h.peek),
		"/v1/refund":  post(h.refund),
		"/v1/reset":   reset,
		"/v1/batch":   post(h.batch),
		"/healthz":    get(h.healthz),
		"/readyz":     get(h.readyz),
		PathOpenAPI:   get(h.openAPI),
	}
	if opts.Metrics != nil {
		h.routes["/metrics"] = get(opts.Metrics.ServeHTTP)
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := requestID(r.Header.Get(HeaderRequestID))
	w.Header().Set(HeaderRequestID, id)
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
	tw := &trackingWriter{ResponseWriter: w}
	defer h.recoverPanic(tw, r)
	h.serve(tw, r)
}

// recoverPanic, deferred, turns a panic of the handler into a 500 internal
// answer (unless the answer had begun), logs it once with its stack, and
// tells the Observer if it is an observe.PanicObserver: one bad request
// must not take the process and every request in flight down with it.
// http.ErrAbortHandler, net/http's way to abort an answer, goes on.
func (h *handler) recoverPanic(w *trackingWriter, r *http.Request) {
	p := recover()
	if p == nil {
		return
	}
	if p == http.ErrAbortHandler {
		panic(p)
	}
	h.reportPanic(r, p, "panic serving a request: answered 500")
	if w.wrote {
		return
	}
	hdr := w.Header()
	for k := range hdr {
		if k != HeaderRequestID {
			delete(hdr, k)
		}
	}
	writeError(w, http.StatusInternalServerError, CodeInternal, "internal error")
}

// reportPanic logs a recovered panic p of r once at Error, with msg and
// the stack, and tells the Observer if it is an observe.PanicObserver.
func (h *handler) reportPanic(r *http.Request, p any, msg string) {
	h.log.LogAttrs(r.Context(), slog.LevelError, msg,
		slog.String("path", r.URL.Path), slog.Any("panic", p), slog.String("stack", string(debug.Stack())),
		slog.String("request_id", RequestID(r.Context())))
	if po, ok := h.observer.(observe.PanicObserver); ok {
		po.Panic(observe.ServerHTTP)
	}
}

// trackingWriter notes whether the answer has begun.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *trackingWriter) WriteHeader(code int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *trackingWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *trackingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (h *handler) serve(w http.ResponseWriter, r *http.Request) {
	v1 := strings.HasPrefix(r.URL.Path, "/v1/")
	scope, known := h.tokens.check(r)
	if v1 && h.tokens.apiRequired() && !known {
		unauthorized(w, r)
		return
	}
	if known {
		r = r.WithContext(context.WithValue(r.Context(), scopeKey{}, scope))
	}
	rt, ok := h.routes[r.URL.Path]
	if !ok {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such path: "+r.URL.Path)
		return
	}
	if !slices.Contains(rt.methods, r.Method) {
		w.Header().Set("Allow", rt.allow)
		writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
			fmt.Sprintf("method %s not allowed; use %s", r.Method, rt.allow))
		return
	}
	if rt.admin && h.tokens.adminRequired() {
		switch {
		case !known:
			unauthorized(w, r)
			return
		case scope.Ops&OpsAdmin == 0:
			w.Header().Set("WWW-Authenticate", `Bearer realm="tollgate", error="insufficient_scope"`)
			writeError(w, http.StatusForbidden, CodeForbidden, "this endpoint needs an admin token")
			return
		}
	}
	rt.serve(w, r)
}

func (h *handler) consume(w http.ResponseWriter, r *http.Request) {
	req, cost, t, ok := h.request(w, r, OpsCheck, true, consumeFields...)
	if !ok {
		return
	}
	h.runConsume(w, r, req, cost, t)
}

// runConsume answers a resolved consume (of /v1/consume or a batch).
func (h *handler) runConsume(w http.ResponseWriter, r *http.Request, req limitRequest, cost int64, t target) {
	var (
		d   tollgate.Decision
		err error
	)
	if t.shadow && cost > t.minUnits() && cost >= 1 {
		// Never fits: report it as a shadow denial, with a peek's figures.
		d, err = h.lim.Namespace(t.ns).PeekAll(r.Context(), t.key, t.limits...)
		d.Allowed, d.RetryAfter = false, 0
	} else {
		ctx := r.Context()
		if req.RequestID != "" {
			ctx = tollgate.WithRequestID(ctx, req.RequestID)
		}
		d, err = h.apply(w, r, t, func(l *tollgate.Limiter) (tollgate.Decision, error) {
			return l.ConsumeAll(ctx, t.key, cost, t.limits...)
		})
	}
	h.respond(w, r, tollgate.OpConsume, t, d, err)
}

func (h *handler) peek(w http.ResponseWriter, r *http.Request) {
	_, _, t, ok := h.request(w, r, OpsCheck, false, peekFields...)
	if !ok {
		return
	}
	h.runPeek(w, r, t)
}

// runPeek answers a resolved peek (of /v1/peek or a batch).
func (h *handler) runPeek(w http.ResponseWriter, r *http.Request, t target) {
	d, err := h.apply(w, r, t, func(l *tollgate.Limiter) (tollgate.Decision, error) {
		return l.PeekAll(r.Context(), t.key, t.limits...)
	})
	h.respond(w, r, tollgate.OpPeek, t, d, err)
}

func (h *handler) refund(w http.ResponseWriter, r *http.Request) {
	_, cost, t, ok := h.request(w, r, OpsRefund, true, refundFields...)
	if !ok {
		return
	}
	d, err := h.apply(w, r, t, func(l *tollgate.Limiter) (tollgate.Decision, error) {
		return l.RefundAll(r.Context(), t.key, cost, t.limits...)
	})
	h.respond(w, r, tollgate.OpRefund, t, d, err)
}

func (h *handler) reset(w http.ResponseWriter, r *http.Request) {
	var req resetRequest
	if e := h.decode(w, r, &req, resetFields...); e != nil {
		writeAPIError(w, e)
		return
	}
	if e := h.permit(r.Context(), OpsAdmin, req.Policy); e != nil {
		writeAPIError(w, e)
		return
	}
	lim := h.lim.Namespace(NamespaceInline)
	if req.Policy != "" {
		p, e := h.policy(req.Policy)
		if e != nil {
			writeAPIError(w, e)
			return
		}
		lim = h.lim.Namespace(PolicyNamespace(p.Name))
	}
	if err := lim.Reset(r.Context(), req.Key); err != nil {
		h.fail(w, r, "reset", err)
		return
	}
	h.logAt(r, slog.LevelDebug, "reset", slog.String("key", req.Key), slog.String("policy", req.Policy))
	httpjson.Write(w, http.StatusOK, struct{}{})
}

func (h *handler) healthz(w http.ResponseWriter, _ *http.Request) {
	httpjson.Write(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	if h.ready != nil {
		if err := h.ready(r.Context()); err != nil {
			// The cause (addresses, slots) goes to the log only: /readyz
			// needs no token.
			h.logAt(r, slog.LevelWarn, "not ready", slog.Any("error", err))
			writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "store unavailable")
			return
		}
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"status": "ok"})
}

// logAt logs a record about r, with its request id.
func (h *handler) logAt(r *http.Request, level slog.Level, msg string, attrs ...slog.Attr) {
	ctx := r.Context()
	if !h.log.Enabled(ctx, level) {
		return
	}
	h.log.LogAttrs(ctx, level, msg, append(attrs, slog.String("request_id", RequestID(ctx)))...)
}
