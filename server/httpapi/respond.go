package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/httpjson"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/server/header"
	"github.com/tollgate/tollgate/server/observe"
)

// Code is the stable, machine-readable code of an error response.
type Code string

// Error codes, with the HTTP status each is sent with.
const (
	// CodeInvalidJSON (400): the body is not one JSON object of the
	// endpoint's shape: malformed, empty, not an object, an unknown field
	// (names are case-sensitive), or data after the object. A field of the
	// wrong type gets the field's own code (invalid_key, invalid_cost,
	// invalid_limit, unknown_policy).
	CodeInvalidJSON Code = "invalid_json"
	// CodeBodyTooLarge (400): the body is longer than Options.MaxBodyBytes.
	CodeBodyTooLarge Code = "body_too_large"
	// CodeInvalidKey (400): the key is missing, empty or too long.
	CodeInvalidKey Code = "invalid_key"
	// CodeInvalidCost (400): the cost is not an integer of at least 1.
	CodeInvalidCost Code = "invalid_cost"
	// CodeInvalidLimit (400): the limit, window or algorithm is missing,
	// malformed or out of range, or given together with a policy.
	CodeInvalidLimit Code = "invalid_limit"
	// CodeUnknownPolicy (400): the policy is not one of Options.Policies,
	// or not a JSON string.
	CodeUnknownPolicy Code = "unknown_policy"
	// CodeCostExceedsLimit (400): a consume or peek cost above the limit,
	// which could never be allowed.
	CodeCostExceedsLimit Code = "cost_exceeds_limit"
	// CodeInvalidRequestID (400): a consume's request_id is longer than
	// tollgate.MaxRequestIDLen bytes.
	CodeInvalidRequestID Code = "invalid_request_id"
	// CodeTooManyChecks (400): a batch of more checks than
	// Options.MaxBatchChecks.
	CodeTooManyChecks Code = "too_many_checks"
	// CodeUnauthorized (401): a /v1/ request without a valid bearer token,
	// when tokens are required.
	CodeUnauthorized Code = "unauthorized"
	// CodeForbidden (403): a request outside its token's Scope (a reset
	// with a token that is not an admin token, another tenant's policy),
	// or inline limits on a server with Options.PoliciesOnly.
	CodeForbidden Code = "forbidden"
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

// result is the body of a consume, peek or refund response.
type result struct {
	Allowed      bool  `json:"allowed"`
	Limit        int64 `json:"limit"`
	Used         int64 `json:"used"`
	Remaining    int64 `json:"remaining"`
	RetryAfterMS int64 `json:"retry_after_ms"`
	ResetAfterMS int64 `json:"reset_after_ms"`
	ShadowDenied bool  `json:"shadow_denied,omitempty"`
	// Limits, for a request of several limits (inline "limits" or a
	// policy's), gives each one's figures; the fields above describe the
	// tightest (tollgate.Decision.Tightest), and allowed all of them.
	Limits []limitResult `json:"limits,omitempty"`
}

// limitResult is one limit's part of a result.
type limitResult struct {
	Name         string `json:"name"`
	Limit        int64  `json:"limit"`
	Window       string `json:"window"`
	Algorithm    string `json:"algorithm"`
	Allowed      bool   `json:"allowed"`
	Used         int64  `json:"used"`
	Remaining    int64  `json:"remaining"`
	RetryAfterMS int64  `json:"retry_after_ms"`
	ResetAfterMS int64  `json:"reset_after_ms"`
}

// degradedResult is the body of a fail_open answer without the store.
type degradedResult struct {
	Allowed  bool   `json:"allowed"`
	Limit    int64  `json:"limit"`
	Degraded string `json:"degraded"`
}

// apiError is a failure to answer with; it never reaches the Limiter.
type apiError struct {
	status    int
	code      Code
	message   string
	challenge string // the WWW-Authenticate header, if any
}

func badRequest(code Code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

// respond writes the Limiter's answer for t: the result, or the error.
func (h *handler) respond(w http.ResponseWriter, r *http.Request, op tollgate.Op, t target, d tollgate.Decision, err error) {
	if err != nil {
		unavailable := errors.Is(err, tollgate.ErrUnavailable)
		if t.mode == policy.FailOpen && unavailable {
			h.observe(op, t, observe.ResultFailOpen)
			h.degrade(w, r, op, t, err)
			return
		}
		if unavailable || !badInput(err) {
			h.observe(op, t, observe.ResultError)
		}
		h.fail(w, r, op.String(), err)
		return
	}
	shadowDenied := t.shadow && op != tollgate.OpRefund && !d.Allowed
	switch {
	case shadowDenied:
		h.observe(op, t, observe.ResultShadowDenied)
	case d.Allowed:
		h.observe(op, t, observe.ResultAllowed)
	default:
		h.observe(op, t, observe.ResultDenied)
	}
	if h.log.Enabled(r.Context(), slog.LevelDebug) {
		h.logAt(r, slog.LevelDebug, op.String(),
			slog.String("key", t.key), slog.String("policy", t.name), slog.Any("limits", t.limits),
			slog.Bool("allowed", d.Allowed), slog.Bool("shadow_denied", shadowDenied), slog.Int64("used", d.Results[d.Tightest()].Used))
	}
	status := http.StatusOK
	if !d.Allowed && !shadowDenied && op != tollgate.OpRefund {
		status = http.StatusTooManyRequests
	}
	hdr := w.Header()
	header.SetAll(hdr, t.headerName(), t.limits, d, status == http.StatusTooManyRequests)
	if shadowDenied {
		hdr.Set(HeaderShadowDenied, "true")
	}
	res := d.Results[d.Tightest()]
	body := result{
		Allowed:      d.Allowed || shadowDenied,
		Limit:        res.Limit,
		Used:         res.Used,
		Remaining:    res.Remaining,
		RetryAfterMS: header.Ceil(d.RetryAfter, time.Millisecond),
		ResetAfterMS: header.Ceil(res.ResetAfter, time.Millisecond),
		ShadowDenied: shadowDenied,
	}
	if t.multi {
		body.Limits = make([]limitResult, len(t.limits))
		for i, l := range t.limits {
			r := d.Results[i]
			body.Limits[i] = limitResult{
				Name:         header.LimitName(t.headerName(), t.limits, i),
				Limit:        l.Units,
				Window:       l.Window.String(),
				Algorithm:    l.Algorithm.String(),
				Allowed:      r.Allowed || (shadowDenied && op != tollgate.OpRefund),
				Used:         r.Used,
				Remaining:    r.Remaining,
				RetryAfterMS: header.Ceil(r.RetryAfter, time.Millisecond),
				ResetAfterMS: header.Ceil(r.ResetAfter, time.Millisecond),
			}
		}
	}
	httpjson.Write(w, status, body)
}

// observe reports the result of a consume to the Observer.
func (h *handler) observe(op tollgate.Op, t target, result string) {
	if h.observer == nil || op != tollgate.OpConsume {
		return
	}
	name := t.name
	if name == "" {
		name = observe.InlinePolicy
	}
	h.observer.Check(name, result)
}

// badInput reports whether err is the Limiter's refusal of bad input (a
// 400), which is not a check.
func badInput(err error) bool {
	_, ok := inputCode(err)
	return ok
}

// degrade answers a fail_open policy's request that the store could not
// answer: allowed, marked degraded.
func (h *handler) degrade(w http.ResponseWriter, r *http.Request, op tollgate.Op, t target, err error) {
	level := slog.LevelWarn
	if r.Context().Err() != nil {
		level = slog.LevelDebug
	}
	h.logAt(r, level, "store unavailable", slog.String("op", op.String()),
		slog.String("policy", t.name), slog.Bool("fail_open", true), slog.Any("error", err))
	hdr := w.Header()
	header.SetPolicy(hdr, t.headerName(), t.limits...)
	hdr.Set(HeaderDegraded, header.DegradedStoreUnavailable)
	httpjson.Write(w, http.StatusOK, degradedResult{Allowed: true, Limit: t.minUnits(), Degraded: header.DegradedStoreUnavailable})
}

// fail maps a Limiter error to a response by its sentinel.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	if code, ok := inputCode(err); ok {
		writeError(w, http.StatusBadRequest, code, strings.TrimPrefix(err.Error(), "tollgate: "))
		return
	}
	if errors.Is(err, tollgate.ErrUnavailable) {
		// A client that went away is not a store failure worth a warning.
		level := slog.LevelWarn
		if r.Context().Err() != nil {
			level = slog.LevelDebug
		}
		h.logAt(r, level, "store unavailable", slog.String("op", op), slog.Any("error", err))
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "store unavailable")
		return
	}
	h.logAt(r, slog.LevelError, "unexpected error", slog.String("op", op), slog.Any("error", err))
	writeError(w, http.StatusInternalServerError, CodeInternal, "internal error")
}

// inputCode returns the code of the Limiter's refusal of bad input (a
// 400), and whether err is one.
func inputCode(err error) (Code, bool) {
	switch {
	case errors.Is(err, tollgate.ErrInvalidKey):
		return CodeInvalidKey, true
	case errors.Is(err, tollgate.ErrInvalidCost):
		return CodeInvalidCost, true
	case errors.Is(err, tollgate.ErrInvalidLimit):
		return CodeInvalidLimit, true
	case errors.Is(err, tollgate.ErrCostExceedsLimit):
		return CodeCostExceedsLimit, true
	case errors.Is(err, tollgate.ErrInvalidRequestID):
		return CodeInvalidRequestID, true
	}
	return "", false
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	if e.challenge != "" {
		w.Header().Set("WWW-Authenticate", e.challenge)
	}
	writeError(w, e.status, e.code, e.message)
}

func writeError(w http.ResponseWriter, status int, code Code, message string) {
	httpjson.WriteError(w, status, string(code), message, 0)
}
