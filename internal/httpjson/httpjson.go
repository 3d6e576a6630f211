// Package httpjson writes the JSON answers of Tollgate's HTTP handlers
// (server/httpapi and middleware), so that both send the same header fields
// and the same error body.
package httpjson

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ErrorBody is the body of every error answer:
//
//	{"error":{"code":"…","message":"…"}}
//
// with "retry_after_ms" in the error object when RetryAfterMS is above 0.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the "error" object of an ErrorBody.
type ErrorDetail struct {
	Code         string `json:"code"`
	Message      string `json:"message"`
	RetryAfterMS int64  `json:"retry_after_ms,omitempty"`
}

// Write answers status with v encoded as JSON and a final newline, with
// Content-Type: application/json, Content-Length, Cache-Control: no-store
// (a rate-limit answer is never reusable) and X-Content-Type-Options:
// nosniff. If v cannot be encoded, which plain structs, maps and strings
// never fail, it answers 500 with an internal error body instead.
func Write(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"code":"internal","message":"encoding the response failed"}}`)
	}
	body = append(body, '\n')
	// One array holds the four values (their keys are canonical), instead
	// of one allocation a field: every answer of the API passes here.
	vals := [...]string{"application/json", strconv.Itoa(len(body)), "no-store", "nosniff"}
	h := w.Header()
	h["Content-Type"], h["Content-Length"], h["Cache-Control"], h["X-Content-Type-Options"] = vals[0:1:1], vals[1:2:2], vals[2:3:3], vals[3:4:4]
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// WriteError answers status with an ErrorBody of code and message;
// retryAfterMS is left out when 0.
func WriteError(w http.ResponseWriter, status int, code, message string, retryAfterMS int64) {
	Write(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: message, RetryAfterMS: retryAfterMS}})
}
