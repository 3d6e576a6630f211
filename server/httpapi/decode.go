package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate"
)

// Decoding of request bodies: exactly one JSON object of known,
// case-exact names; integers by hand, so that floats, strings and
// overflowing numbers get a precise error code.

// Request bodies. Integers are decoded by hand from the raw JSON so that
// floats, strings and overflowing numbers get a precise error code.
type (
	// limitRequest is the body of consume, peek (without cost) and refund.
	limitRequest struct {
		Key       string          `json:"key"`
		Cost      json.RawMessage `json:"cost"`
		Limit     json.RawMessage `json:"limit"`
		Window    string          `json:"window"`
		Algorithm string          `json:"algorithm"`
		Limits    json.RawMessage `json:"limits"`
		Policy    string          `json:"policy"`
		// RequestID (consume only) makes a repeat of this consume within
		// the dedupe window answer without counting again.
		RequestID string `json:"request_id"`
	}
	resetRequest struct {
		Key    string `json:"key"`
		Policy string `json:"policy"`
	}
)

// The field names of each request body, exactly as the struct tags spell them.
var (
	consumeFields = []string{"key", "cost", "limit", "window", "algorithm", "limits", "policy", "request_id"}
	refundFields  = []string{"key", "cost", "limit", "window", "algorithm", "limits", "policy"}
	peekFields    = []string{"key", "limit", "window", "algorithm", "limits", "policy"}
	resetFields   = []string{"key", "policy"}
)

// decode reads exactly one JSON object from the body into v, whose fields
// (with exactly these names) are fields.
func (h *handler) decode(w http.ResponseWriter, r *http.Request, v any, fields ...string) *apiError {
	raw, e := h.readBody(w, r)
	if e != nil {
		return e
	}
	return decodeObject(raw, v, "request body", fields...)
}

// readBody reads exactly one JSON value from the body, of at most maxBody
// bytes.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) (json.RawMessage, *apiError) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, h.maxBody))
	var raw json.RawMessage
	err := dec.Decode(&raw)
	if err == nil {
		// Anything but the end of the body is trailing data.
		if _, err = dec.Token(); err == io.EOF {
			err = nil
		} else if !tooLarge(err) {
			return nil, badRequest(CodeInvalidJSON, "unexpected data after the JSON object")
		}
	}
	switch {
	case err == nil:
		return raw, nil
	case tooLarge(err):
		return nil, badRequest(CodeBodyTooLarge, "request body larger than %d bytes", h.maxBody)
	case errors.Is(err, io.EOF):
		return nil, badRequest(CodeInvalidJSON, "empty request body")
	default:
		return nil, badRequest(CodeInvalidJSON, "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
}

// decodeObject decodes raw, which must be a JSON object (what names it in
// errors) of no names but fields, into v.
func decodeObject(raw json.RawMessage, v any, what string, fields ...string) *apiError {
	// encoding/json matches names case-insensitively; the API does not.
	var names map[string]json.RawMessage
	if json.Unmarshal(raw, &names) != nil || names == nil {
		return badRequest(CodeInvalidJSON, "%s must be a JSON object", what)
	}
	for name := range names {
		if !slices.Contains(fields, name) {
			return badRequest(CodeInvalidJSON, "unknown field %q", name)
		}
	}

	// Every name is a field's, exactly: a plain decode is strict now.
	err := json.Unmarshal(raw, v)
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
		case "policy":
			return badRequest(CodeUnknownPolicy, "policy must be a JSON string, not %s", typeErr.Value)
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

// parseLimits parses the syntax of an inline "limits" list: 1 to
// tollgate.MaxLimits objects {"limit","window","algorithm"?}. Repeats of an
// algorithm and window are left to the Limiter.
func parseLimits(raw json.RawMessage) ([]tollgate.Limit, *apiError) {
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil, badRequest(CodeInvalidLimit, `limits must be a JSON array of {"limit","window","algorithm"} objects`)
	}
	if len(items) == 0 || len(items) > tollgate.MaxLimits {
		return nil, badRequest(CodeInvalidLimit, "limits: %d limits (want 1 to %d)", len(items), tollgate.MaxLimits)
	}
	limits := make([]tollgate.Limit, len(items))
	for i, item := range items {
		var l struct {
			Limit     json.RawMessage `json:"limit"`
			Window    string          `json:"window"`
			Algorithm string          `json:"algorithm"`
		}
		d := json.NewDecoder(bytes.NewReader(item))
		d.DisallowUnknownFields()
		if err := d.Decode(&l); err != nil || !caseExact(item, "limit", "window", "algorithm") {
			return nil, badRequest(CodeInvalidLimit, `limits[%d] must be an object of "limit", "window" and "algorithm"`, i)
		}
		lim, e := parseLimit(l.Limit, l.Window, l.Algorithm)
		if e != nil {
			e.message = fmt.Sprintf("limits[%d]: %s", i, e.message)
			return nil, e
		}
		limits[i] = lim
	}
	return limits, nil
}

// caseExact reports whether the JSON object raw has no names but fields,
// spelled exactly (encoding/json matches names case-insensitively).
func caseExact(raw json.RawMessage, fields ...string) bool {
	var names map[string]json.RawMessage
	if json.Unmarshal(raw, &names) != nil || names == nil {
		return false
	}
	for name := range names {
		if !slices.Contains(fields, name) {
			return false
		}
	}
	return true
}

// parseLimit parses the syntax of the inline limit fields.
func parseLimit(rawLimit json.RawMessage, window, algorithm string) (tollgate.Limit, *apiError) {
	if absent(rawLimit) {
		return tollgate.Limit{}, badRequest(CodeInvalidLimit, "limit is required (or a policy)")
	}
	units, err := parseInt(rawLimit)
	if err != nil {
		return tollgate.Limit{}, badRequest(CodeInvalidLimit, "limit %s", err)
	}
	if window == "" {
		return tollgate.Limit{}, badRequest(CodeInvalidLimit, `window is required (a Go duration such as "1h")`)
	}
	d, err := time.ParseDuration(window)
	if err != nil {
		return tollgate.Limit{}, badRequest(CodeInvalidLimit, "window %.32q is not a Go duration such as \"1h\"", window)
	}
	alg, err := tollgate.ParseAlgorithm(algorithm)
	if err != nil {
		return tollgate.Limit{}, badRequest(CodeInvalidLimit, "unknown algorithm %.32q (want sliding_log, sliding_window or gcra)", algorithm)
	}
	return tollgate.Limit{Units: units, Window: d, Algorithm: alg}, nil
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
