// Package httpapi serves a tollgate.Limiter over HTTP with JSON bodies.
//
// Endpoints (all bodies are JSON objects; Content-Type is not checked):
//
//	POST /v1/consume  {"key","cost"?,"limit","window","algorithm"?} → result; 200 allowed, 429 denied
//	POST /v1/peek     {"key","limit","window","algorithm"?}         → result; 200 allowed, 429 denied
//	POST /v1/refund   {"key","cost"?,"limit","window","algorithm"?} → result; always 200
//	POST /v1/reset    {"key"}                                       → {}; 200
//	GET  /healthz                                                   → {"status":"ok"}; 200
//	GET  /readyz                                                    → {"status":"ok"}; 200, or 503 error
//
// In requests, "cost" defaults to 1, "limit" is a JSON integer (no fraction
// or exponent), "window" is a Go duration string such as "1h" or "250ms"
// between tollgate.MinWindow and tollgate.MaxWindow, and "algorithm" is one
// of "sliding_log" (the default), "sliding_window" or "gcra". A null field
// counts as absent. Field names are case-sensitive; unknown fields and data
// after the object are rejected.
//
// A result is
//
//	{"allowed":true,"limit":100,"used":3,"remaining":97,"retry_after_ms":0,"reset_after_ms":3600000}
//
// with durations in milliseconds rounded up, so a client that waits
// retry_after_ms never retries too early. A 429 also carries a Retry-After
// header in whole seconds, rounded up.
//
// Every failure has the body {"error":{"code":"…","message":"…"}}, where code
// is one of the Code constants: 400 for bad input (which never touches the
// store), 404 for an unknown path, 405 with an Allow header for a wrong
// method, 503 when the store or readiness check fails, 500 otherwise.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// DefaultMaxBodyBytes is the largest request body when Options.MaxBodyBytes
// is 0: 64 KiB.
const DefaultMaxBodyBytes = 64 << 10

// Code is the stable, machine-readable code of an error response.
type Code string

// Error codes, with the HTTP status each is sent with.
const (
	// CodeInvalidJSON (400): the body is not one JSON object of the
	// endpoint's shape: malformed, empty, not an object, an unknown field
	// (names are case-sensitive), or data after the object. A field of the
	// wrong type gets the field's own code (invalid_key, invalid_cost,
	// invalid_limit).
	CodeInvalidJSON Code = "invalid_json"
	// CodeBodyTooLarge (400): the body is longer than Options.MaxBodyBytes.
	CodeBodyTooLarge Code = "body_too_large"
	// CodeInvalidKey (400): the key is missing, empty or too long.
	CodeInvalidKey Code = "invalid_key"
	// CodeInvalidCost (400): the cost is not an integer of at least 1.
	CodeInvalidCost Code = "invalid_cost"
	// CodeInvalidLimit (400): the limit, window or algorithm is missing,
	// malformed or out of range.
	CodeInvalidLimit Code = "invalid_limit"
	// CodeCostExceedsLimit (400): a consume or peek cost above the limit,
	// which could never be allowed.
	CodeCostExceedsLimit Code = "cost_exceeds_limit"
	// CodeMethodNotAllowed (405): the path exists but not for this method;
	// the Allow header lists the methods it takes.
	CodeMethodNotAllowed Code = "method_not_allowed"
	// CodeNotFound (404): no such path.
	CodeNotFound Code = "not_found"
	// CodeUnavailable (503): the store could not answer, or the readiness
	// check failed. A consume that failed this way may have been recorded.
	CodeUnavailable Code = "unavailable"
	// CodeInternal (500): an unexpected error.
	CodeInternal Code = "internal"
)

// Options configures the handler. The zero value is ready to use.
type Options struct {
	// Logger receives store and readiness failures at Warn (with the error,
	// never the key), and one record per answered consume, peek, refund or
	// reset at Debug (with the key). Nothing is logged per request at Info.
	// Nil discards.
	Logger *slog.Logger
	// Ready is called by GET /readyz with the request's context; an error
	// makes it answer 503 with code unavailable and the error's text in the
	// message. Nil means always ready.
	Ready func(context.Context) error
	// MaxBodyBytes is the largest request body accepted; 0 (or less) means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

type handler struct {
	lim     *tollgate.Limiter
	log     *slog.Logger
	ready   func(context.Context) error
	maxBody int64
	routes  map[string]route
}

type route struct {
	methods []string // methods served
	allow   string   // the Allow header for any other method
	serve   func(http.ResponseWriter, *http.Request)
}

// New returns an http.Handler serving l as described in the package
// documentation. l must not be nil.
func New(l *tollgate.Limiter, opts Options) http.Handler {
	h := &handler{lim: l, log: opts.Logger, ready: opts.Ready, maxBody: opts.MaxBodyBytes}
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
	h.routes = map[string]route{
		"/v1/consume": post(h.consume),
		"/v1/peek":    post(h.peek),
		"/v1/refund":  post(h.refund),
		"/v1/reset":   post(h.reset),
		"/healthz":    get(h.healthz),
		"/readyz":     get(h.readyz),
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := h.routes[r.URL.Path]
	if !ok {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such path: "+r.URL.Path)
		return
	}
	for _, m := range rt.methods {
		if r.Method == m {
			rt.serve(w, r)
			return
		}
	}
	w.Header().Set("Allow", rt.allow)
	writeError(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed,
		fmt.Sprintf("method %s not allowed; use %s", r.Method, rt.allow))
}

// Request bodies. Integers are decoded by hand from the raw JSON so that
// floats, strings and overflowing numbers get a precise error code.
type (
	consumeRequest struct {
		Key       string          `json:"key"`
		Cost      json.RawMessage `json:"cost"`
		Limit     json.RawMessage `json:"limit"`
		Window    string          `json:"window"`
		Algorithm string          `json:"algorithm"`
	}
	peekRequest struct {
		Key       string          `json:"key"`
		Limit     json.RawMessage `json:"limit"`
		Window    string          `json:"window"`
		Algorithm string          `json:"algorithm"`
	}
	resetRequest struct {
		Key string `json:"key"`
	}
)

// The field names of each request body, exactly as the struct tags spell them.
var (
	consumeFields = []string{"key", "cost", "limit", "window", "algorithm"}
	peekFields    = []string{"key", "limit", "window", "algorithm"}
	resetFields   = []string{"key"}
)

// result is the body of a consume, peek or refund response.
type result struct {
	Allowed      bool  `json:"allowed"`
	Limit        int64 `json:"limit"`
	Used         int64 `json:"used"`
	Remaining    int64 `json:"remaining"`
	RetryAfterMS int64 `json:"retry_after_ms"`
	ResetAfterMS int64 `json:"reset_after_ms"`
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// apiError is a failure to answer with; it never reaches the Limiter.
type apiError struct {
	status  int
	code    Code
	message string
}

func badRequest(code Code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

func (h *handler) consume(w http.ResponseWriter, r *http.Request) {
	var req consumeRequest
	if e := h.decode(w, r, &req, consumeFields...); e != nil {
		writeAPIError(w, e)
		return
	}
	cost, lim, e := parseCostLimit(req.Cost, req.Limit, req.Window, req.Algorithm)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	res, err := h.lim.Consume(r.Context(), req.Key, cost, lim)
	h.respond(w, r, tollgate.OpConsume, req.Key, lim, res, err, statusFor(res))
}

func (h *handler) peek(w http.ResponseWriter, r *http.Request) {
	var req peekRequest
	if e := h.decode(w, r, &req, peekFields...); e != nil {
		writeAPIError(w, e)
		return
	}
	_, lim, e := parseCostLimit(nil, req.Limit, req.Window, req.Algorithm)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	res, err := h.lim.Peek(r.Context(), req.Key, lim)
	h.respond(w, r, tollgate.OpPeek, req.Key, lim, res, err, statusFor(res))
}

func (h *handler) refund(w http.ResponseWriter, r *http.Request) {
	var req consumeRequest
	if e := h.decode(w, r, &req, consumeFields...); e != nil {
		writeAPIError(w, e)
		return
	}
	cost, lim, e := parseCostLimit(req.Cost, req.Limit, req.Window, req.Algorithm)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	res, err := h.lim.Refund(r.Context(), req.Key, cost, lim)
	h.respond(w, r, tollgate.OpRefund, req.Key, lim, res, err, http.StatusOK)
}

func (h *handler) reset(w http.ResponseWriter, r *http.Request) {
	var req resetRequest
	if e := h.decode(w, r, &req, resetFields...); e != nil {
		writeAPIError(w, e)
		return
	}
	if err := h.lim.Reset(r.Context(), req.Key); err != nil {
		h.fail(w, r, "reset", err)
		return
	}
	h.log.LogAttrs(r.Context(), slog.LevelDebug, "reset", slog.String("key", req.Key))
	writeJSON(w, http.StatusOK, struct{}{})
}

func (h *handler) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	if h.ready != nil {
		if err := h.ready(r.Context()); err != nil {
			h.log.LogAttrs(r.Context(), slog.LevelWarn, "not ready", slog.Any("error", err))
			writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "not ready: "+err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func statusFor(res tollgate.Result) int {
	if res.Allowed {
		return http.StatusOK
	}
	return http.StatusTooManyRequests
}

// respond writes the Limiter's answer: the result with status, or the error.
func (h *handler) respond(w http.ResponseWriter, r *http.Request, op tollgate.Op, key string, lim tollgate.Limit, res tollgate.Result, err error, status int) {
	if err != nil {
		h.fail(w, r, op.String(), err)
		return
	}
	if h.log.Enabled(r.Context(), slog.LevelDebug) {
		h.log.LogAttrs(r.Context(), slog.LevelDebug, op.String(),
			slog.String("key", key), slog.String("limit", lim.String()),
			slog.Bool("allowed", res.Allowed), slog.Int64("used", res.Used))
	}
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", strconv.FormatInt(ceilDiv(res.RetryAfter, time.Second), 10))
	}
	writeJSON(w, status, result{
		Allowed:      res.Allowed,
		Limit:        res.Limit,
		Used:         res.Used,
		Remaining:    res.Remaining,
		RetryAfterMS: ceilDiv(res.RetryAfter, time.Millisecond),
		ResetAfterMS: ceilDiv(res.ResetAfter, time.Millisecond),
	})
}

// fail maps a Limiter error to a response by its sentinel.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	var code Code
	switch {
	case errors.Is(err, tollgate.ErrInvalidKey):
		code = CodeInvalidKey
	case errors.Is(err, tollgate.ErrInvalidCost):
		code = CodeInvalidCost
	case errors.Is(err, tollgate.ErrInvalidLimit):
		code = CodeInvalidLimit
	case errors.Is(err, tollgate.ErrCostExceedsLimit):
		code = CodeCostExceedsLimit
	case errors.Is(err, tollgate.ErrUnavailable):
		// A client that went away is not a store failure worth a warning.
		level := slog.LevelWarn
		if r.Context().Err() != nil {
			level = slog.LevelDebug
		}
		h.log.LogAttrs(r.Context(), level, "store unavailable", slog.String("op", op), slog.Any("error", err))
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "store unavailable")
		return
	default:
		h.log.LogAttrs(r.Context(), slog.LevelError, "unexpected error", slog.String("op", op), slog.Any("error", err))
		writeError(w, http.StatusInternalServerError, CodeInternal, "internal error")
		return
	}
	writeError(w, http.StatusBadRequest, code, strings.TrimPrefix(err.Error(), "tollgate: "))
}

// decode reads exactly one JSON object from the body into v, whose fields
// (with exactly these names) are fields.
func (h *handler) decode(w http.ResponseWriter, r *http.Request, v any, fields ...string) *apiError {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, h.maxBody))
	var raw json.RawMessage
	err := dec.Decode(&raw)
	if err == nil {
		// Anything but the end of the body is trailing data.
		if _, err = dec.Token(); err == io.EOF {
			err = nil
		} else if !tooLarge(err) {
			return badRequest(CodeInvalidJSON, "unexpected data after the JSON object")
		}
	}
	switch {
	case err == nil:
	case tooLarge(err):
		return badRequest(CodeBodyTooLarge, "request body larger than %d bytes", h.maxBody)
	case errors.Is(err, io.EOF):
		return badRequest(CodeInvalidJSON, "empty request body")
	default:
		return badRequest(CodeInvalidJSON, "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}

	// encoding/json matches names case-insensitively; the API does not.
	var names map[string]json.RawMessage
	if json.Unmarshal(raw, &names) != nil || names == nil {
		return badRequest(CodeInvalidJSON, "request body must be a JSON object")
	}
	for name := range names {
		if !slices.Contains(fields, name) {
			return badRequest(CodeInvalidJSON, "unknown field %q", name)
		}
	}

	strict := json.NewDecoder(bytes.NewReader(raw))
	strict.DisallowUnknownFields()
	err = strict.Decode(v)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &typeErr):
		switch typeErr.Field {
		case "key":
			return badRequest(CodeInvalidKey, "key must be a JSON string, not %s", typeErr.Value)
		case "window", "algorithm":
			return badRequest(CodeInvalidLimit, "%s must be a JSON string, not %s", typeErr.Field, typeErr.Value)
		}
		return badRequest(CodeInvalidJSON, "field %q has the wrong type: %s", typeErr.Field, typeErr.Value)
	default: // unreachable: raw is a valid object of known names
		return badRequest(CodeInvalidJSON, "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
}

func tooLarge(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

// parseCostLimit parses the syntax of cost (nil or null: 1) and of the limit
// fields. Ranges are left to the Limiter, which reports them by sentinel.
func parseCostLimit(rawCost, rawLimit json.RawMessage, window, algorithm string) (int64, tollgate.Limit, *apiError) {
	cost := int64(1)
	if !absent(rawCost) {
		n, err := parseInt(rawCost)
		if err != nil {
			return 0, tollgate.Limit{}, badRequest(CodeInvalidCost, "cost %s", err)
		}
		cost = n
	}
	if absent(rawLimit) {
		return 0, tollgate.Limit{}, badRequest(CodeInvalidLimit, "limit is required")
	}
	units, err := parseInt(rawLimit)
	if err != nil {
		return 0, tollgate.Limit{}, badRequest(CodeInvalidLimit, "limit %s", err)
	}
	if window == "" {
		return 0, tollgate.Limit{}, badRequest(CodeInvalidLimit, `window is required (a Go duration such as "1h")`)
	}
	d, err := time.ParseDuration(window)
	if err != nil {
		return 0, tollgate.Limit{}, badRequest(CodeInvalidLimit, "window %.32q is not a Go duration such as \"1h\"", window)
	}
	alg, err := tollgate.ParseAlgorithm(algorithm)
	if err != nil {
		return 0, tollgate.Limit{}, badRequest(CodeInvalidLimit, "unknown algorithm %.32q (want sliding_log, sliding_window or gcra)", algorithm)
	}
	return cost, tollgate.Limit{Units: units, Window: d, Algorithm: alg}, nil
}

func absent(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// parseInt accepts a JSON integer literal that fits in an int64.
func parseInt(raw json.RawMessage) (int64, error) {
	if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, fmt.Errorf("must be a JSON integer, not %.32s", raw)
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%.32s is out of range", raw)
	}
	if err != nil {
		return 0, fmt.Errorf("must be a JSON integer, not %.32s", raw)
	}
	return n, nil
}

// ceilDiv returns d in units of unit, rounded up; 0 for d <= 0.
func ceilDiv(d, unit time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	n := int64(d / unit)
	if d%unit != 0 {
		n++
	}
	return n
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	writeError(w, e.status, e.code, e.message)
}

func writeError(w http.ResponseWriter, status int, code Code, message string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // unreachable: every body is a plain struct or map
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"code":"internal","message":"encoding the response failed"}}`)
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
