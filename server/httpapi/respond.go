package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/server/header"
)

// respond writes the Limiter's answer for t: the result, or the error.
func (h *handler) respond(w http.ResponseWriter, r *http.Request, op tollgate.Op, t target, d tollgate.Decision, err error) {
	if err != nil {
		unavailable := errors.Is(err, tollgate.ErrUnavailable)
		if t.failOpen && unavailable {
			h.observe(op, t, resultFailOpen)
			h.degrade(w, r, op, t, err)
			return
		}
		if unavailable || !badInput(err) {
			h.observe(op, t, resultError)
		}
		h.fail(w, r, op.String(), err)
		return
	}
	shadowDenied := t.shadow && op != tollgate.OpRefund && !d.Allowed
	switch {
	case shadowDenied:
		h.observe(op, t, resultShadowDenied)
	case d.Allowed:
		h.observe(op, t, resultAllowed)
	default:
		h.observe(op, t, resultDenied)
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
		RetryAfterMS: ceilDiv(d.RetryAfter, time.Millisecond),
		ResetAfterMS: ceilDiv(res.ResetAfter, time.Millisecond),
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
				RetryAfterMS: ceilDiv(r.RetryAfter, time.Millisecond),
				ResetAfterMS: ceilDiv(r.ResetAfter, time.Millisecond),
			}
		}
	}
	writeJSON(w, status, body)
}

// observe reports the result of a consume to the Observer.
func (h *handler) observe(op tollgate.Op, t target, result string) {
	if h.observer == nil || op != tollgate.OpConsume {
		return
	}
	name := t.name
	if name == "" {
		name = inlineObserverName
	}
	h.observer.Check(name, result)
}

// badInput reports whether err is the Limiter's refusal of bad input (a
// 400), which is not a check.
func badInput(err error) bool {
	return errors.Is(err, tollgate.ErrInvalidKey) || errors.Is(err, tollgate.ErrInvalidCost) ||
		errors.Is(err, tollgate.ErrInvalidLimit) || errors.Is(err, tollgate.ErrCostExceedsLimit) ||
		errors.Is(err, tollgate.ErrInvalidRequestID)
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
	hdr.Set(HeaderDegraded, degradedStoreUnavailable)
	writeJSON(w, http.StatusOK, degradedResult{Allowed: true, Limit: t.minUnits(), Degraded: degradedStoreUnavailable})
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
	case errors.Is(err, tollgate.ErrInvalidRequestID):
		code = CodeInvalidRequestID
	case errors.Is(err, tollgate.ErrUnavailable):
		// A client that went away is not a store failure worth a warning.
		level := slog.LevelWarn
		if r.Context().Err() != nil {
			level = slog.LevelDebug
		}
		h.logAt(r, level, "store unavailable", slog.String("op", op), slog.Any("error", err))
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "store unavailable")
		return
	default:
		h.logAt(r, slog.LevelError, "unexpected error", slog.String("op", op), slog.Any("error", err))
		writeError(w, http.StatusInternalServerError, CodeInternal, "internal error")
		return
	}
	writeError(w, http.StatusBadRequest, code, strings.TrimPrefix(err.Error(), "tollgate: "))
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
