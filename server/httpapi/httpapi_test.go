package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/fakeclock"
	"github.com/tollgate/tollgate/server/httpapi"
	"github.com/tollgate/tollgate/store/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the fake clock's start.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

type env struct {
	h     http.Handler
	lim   *tollgate.Limiter
	clock *fakeclock.Clock
}

// newEnv returns a handler over a memory store driven by a fake clock.
func newEnv(t testing.TB, opts httpapi.Options) *env {
	t.Helper()
	c := fakeclock.New(t0)
	st := memory.New(memory.Options{Now: c.Now})
	t.Cleanup(func() { _ = st.Close() })
	lim := tollgate.New(st, tollgate.Options{Now: c.Now})
	return &env{h: httpapi.New(lim, opts), lim: lim, clock: c}
}

func (e *env) do(method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

type errorResponse struct {
	Error struct {
		Code    httpapi.Code `json:"code"`
		Message string       `json:"message"`
	} `json:"error"`
}

// decodeError checks that body is exactly the error shape.
func decodeError(t *testing.T, body []byte) errorResponse {
	t.Helper()
	var e errorResponse
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("error body %q: empty code or message", body)
	}
	return e
}

func checkJSONHeaders(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if got := rec.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	if !json.Valid(rec.Body.Bytes()) {
		t.Errorf("body is not valid JSON: %q", rec.Body)
	}
}

// step is one request at the fake clock's current time, after advancing it.
type step struct {
	advance    time.Duration
	method     string // default POST
	path       string
	body       string
	wantStatus int
	wantBody   string // exact, without the trailing newline
	wantRetry  string // Retry-After header
}

func TestSuccess(t *testing.T) {
	const (
		lim100   = `"limit":100,"window":"1h"`
		peek100  = `{"key":"k",` + lim100 + `}`
		ok100    = `{"allowed":true,"limit":100,"used":%d,"remaining":%d,"retry_after_ms":0,"reset_after_ms":%d}`
		hour     = 3600000
		minuteMS = 60000
	)
	tests := []struct {
		name  string
		steps []step
	}{
		{"consume from the docs", []step{
			{path: "/v1/consume", body: `{"key":"cust-42","cost":3,"limit":100,"window":"1h","algorithm":"sliding_log"}`,
				wantStatus: 200, wantBody: fmt.Sprintf(ok100, 3, 97, hour)},
		}},
		{"consume defaults: cost 1, sliding_log", []step{
			{path: "/v1/consume", body: `{"key":"k",` + lim100 + `}`, wantStatus: 200, wantBody: fmt.Sprintf(ok100, 1, 99, hour)},
			{path: "/v1/consume", body: `{"key":"k","cost":null,"algorithm":null,` + lim100 + `}`, wantStatus: 200, wantBody: fmt.Sprintf(ok100, 2, 98, hour)},
			{path: "/v1/consume", body: `{"key":"k","algorithm":"",` + lim100 + `}`, wantStatus: 200, wantBody: fmt.Sprintf(ok100, 3, 97, hour)},
		}},
		{"consume denied is 429 with the same body", []step{
			{path: "/v1/consume", body: `{"key":"k","cost":2,"limit":2,"window":"1m"}`, wantStatus: 200,
				wantBody: `{"allowed":true,"limit":2,"used":2,"remaining":0,"retry_after_ms":0,"reset_after_ms":60000}`},
			{advance: 10 * time.Second, path: "/v1/consume", body: `{"key":"k","limit":2,"window":"1m"}`, wantStatus: 429,
				wantBody: `{"allowed":false,"limit":2,"used":2,"remaining":0,"retry_after_ms":50000,"reset_after_ms":50000}`, wantRetry: "50"},
			{advance: 50 * time.Second, path: "/v1/consume", body: `{"key":"k","limit":2,"window":"1m"}`, wantStatus: 200,
				wantBody: `{"allowed":true,"limit":2,"used":1,"remaining":1,"retry_after_ms":0,"reset_after_ms":60000}`},
		}},
		{"durations round up: 1µs is 1ms, Retry-After 1s", []step{
			{path: "/v1/consume", body: `{"key":"k","limit":1,"window":"1h"}`, wantStatus: 200,
				wantBody: `{"allowed":true,"limit":1,"used":1,"remaining":0,"retry_after_ms":0,"reset_after_ms":3600000}`},
			{advance: time.Hour - time.Microsecond, path: "/v1/peek", body: `{"key":"k","limit":1,"window":"1h"}`, wantStatus: 429,
				wantBody: `{"allowed":false,"limit":1,"used":1,"remaining":0,"retry_after_ms":1,"reset_after_ms":1}`, wantRetry: "1"},
			{advance: 500 * time.Microsecond, path: "/v1/consume", body: `{"key":"k","limit":1,"window":"1h"}`, wantStatus: 200,
				wantBody: `{"allowed":true,"limit":1,"used":1,"remaining":0,"retry_after_ms":0,"reset_after_ms":3600000}`},
		}},
		{"peek records nothing", []step{
			{path: "/v1/peek", body: peek100, wantStatus: 200, wantBody: fmt.Sprintf(ok100, 0, 100, 0)},
			{path: "/v1/consume", body: `{"key":"k","cost":100,` + lim100 + `}`, wantStatus: 200, wantBody: fmt.Sprintf(ok100, 100, 0, hour)},
			{advance: time.Minute, path: "/v1/peek", body: peek100, wantStatus: 429,
				wantBody:  fmt.Sprintf(`{"allowed":false,"limit":100,"used":100,"remaining":0,"retry_after_ms":%d,"reset_after_ms":%d}`, hour-minuteMS, hour-minuteMS),
				wantRetry: "3540"},
		}},
		{"refund gives back and is always 200", []step{
			{path: "/v1/consume", body: `{"key":"k","cost":2,"limit":2,"window":"1m"}`, wantStatus: 200,
				wantBody: `{"allowed":true,"limit":2,"used":2,"remaining":0,"retry_after_ms":0,"reset_after_ms":60000}`},
			{path: "/v1/refund", body: `{"key":"k","cost":1,"limit":2,"window":"1m"}`, wantStatus: 200,
				wantBody: `{"allowed":true,"limit":2,"used":1,"remaining":1,"retry_after_ms":0,"reset_after_ms":60000}`},
			{path: "/v1/refund", body: `{"key":"k","limit":2,"window":"1m"}`, wantStatus: 200,
				wantBody: `{"allowed":true,"limit":2,"used":0,"remaining":2,"retry_after_ms":0,"reset_after_ms":0}`},
			{path: "/v1/refund", body: `{"key":"k","cost":5,"limit":2,"window":"1m"}`, wantStatus: 200,
				wantBody: `{"allowed":true,"limit":2,"used":0,"remaining":2,"retry_after_ms":0,"reset_after_ms":0}`},
		}},
		{"refund of a lowered limit still over it answers 200 with allowed false", []step{
			{path: "/v1/consume", body: `{"key":"k","cost":5,"limit":5,"window":"1m"}`, wantStatus: 200,
				wantBody: `{"allowed":true,"limit":5,"used":5,"remaining":0,"retry_after_ms":0,"reset_after_ms":60000}`},
			{path: "/v1/refund", body: `{"key":"k","cost":1,"limit":2,"window":"1m"}`, wantStatus: 200,
				wantBody: `{"allowed":false,"limit":2,"used":4,"remaining":0,"retry_after_ms":60000,"reset_after_ms":60000}`},
		}},
		{"reset forgets the key", []step{
			{path: "/v1/consume", body: `{"key":"k","cost":7,` + lim100 + `}`, wantStatus: 200, wantBody: fmt.Sprintf(ok100, 7, 93, hour)},
			{path: "/v1/reset", body: `{"key":"k"}`, wantStatus: 200, wantBody: `{}`},
			{path: "/v1/peek", body: peek100, wantStatus: 200, wantBody: fmt.Sprintf(ok100, 0, 100, 0)},
			{path: "/v1/reset", body: `{"key":"never-used"}`, wantStatus: 200, wantBody: `{}`},
		}},
		{"keys are independent", []step{
			{path: "/v1/consume", body: `{"key":"a","cost":100,` + lim100 + `}`, wantStatus: 200, wantBody: fmt.Sprintf(ok100, 100, 0, hour)},
			{path: "/v1/consume", body: `{"key":"b",` + lim100 + `}`, wantStatus: 200, wantBody: fmt.Sprintf(ok100, 1, 99, hour)},
		}},
		{"sliding_window", []step{
			{path: "/v1/consume", body: `{"key":"k","cost":4,"limit":10,"window":"1s","algorithm":"sliding_window"}`, wantStatus: 200},
			{path: "/v1/peek", body: `{"key":"k","limit":10,"window":"1s","algorithm":"sliding_window"}`, wantStatus: 200},
			{path: "/v1/consume", body: `{"key":"k","cost":7,"limit":10,"window":"1s","algorithm":"sliding_window"}`, wantStatus: 429},
		}},
		{"gcra", []step{
			{path: "/v1/consume", body: `{"key":"k","cost":10,"limit":10,"window":"10s","algorithm":"gcra"}`, wantStatus: 200,
				wantBody: `{"allowed":true,"limit":10,"used":10,"remaining":0,"retry_after_ms":0,"reset_after_ms":10000}`},
			{path: "/v1/consume", body: `{"key":"k","limit":10,"window":"10s","algorithm":"gcra"}`, wantStatus: 429,
				wantBody: `{"allowed":false,"limit":10,"used":10,"remaining":0,"retry_after_ms":1000,"reset_after_ms":10000}`, wantRetry: "1"},
			{advance: time.Second, path: "/v1/consume", body: `{"key":"k","limit":10,"window":"10s","algorithm":"gcra"}`, wantStatus: 200,
				wantBody: `{"allowed":true,"limit":10,"used":10,"remaining":0,"retry_after_ms":0,"reset_after_ms":10000}`},
		}},
		{"algorithms keep separate state for a key", []step{
			{path: "/v1/consume", body: `{"key":"k","cost":100,` + lim100 + `}`, wantStatus: 200},
			{path: "/v1/peek", body: `{"key":"k",` + lim100 + `,"algorithm":"gcra"}`, wantStatus: 200, wantBody: fmt.Sprintf(ok100, 0, 100, 0)},
		}},
		{"health", []step{
			{method: "GET", path: "/healthz", wantStatus: 200, wantBody: `{"status":"ok"}`},
			{method: "GET", path: "/readyz", wantStatus: 200, wantBody: `{"status":"ok"}`},
			{method: "HEAD", path: "/healthz", wantStatus: 200, wantBody: `{"status":"ok"}`},
		}},
		{"whitespace around values and the object", []step{
			{path: "/v1/consume", body: " \n{ \"key\" : \"k\" , \"cost\" : 2 , \"limit\" :\t100 , \"window\" : \"1h\" }\r\n ", wantStatus: 200, wantBody: fmt.Sprintf(ok100, 2, 98, hour)},
		}},
		{"no Content-Type needed (none of these steps sends one)", []step{
			{path: "/v1/consume", body: `{"key":"k",` + lim100 + `}`, wantStatus: 200, wantBody: fmt.Sprintf(ok100, 1, 99, hour)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, httpapi.Options{})
			for i, s := range tt.steps {
				e.clock.Advance(s.advance)
				method := s.method
				if method == "" {
					method = http.MethodPost
				}
				var req *http.Request
				if s.body == "" {
					req = httptest.NewRequest(method, s.path, nil)
				} else {
					req = httptest.NewRequest(method, s.path, strings.NewReader(s.body))
				}
				rec := httptest.NewRecorder()
				e.h.ServeHTTP(rec, req)
				if rec.Code != s.wantStatus {
					t.Fatalf("step %d %s %s: status %d, want %d; body %s", i, s.path, s.body, rec.Code, s.wantStatus, rec.Body)
				}
				checkJSONHeaders(t, rec)
				if got := strings.TrimSuffix(rec.Body.String(), "\n"); s.wantBody != "" && got != s.wantBody {
					t.Errorf("step %d %s %s:\n got %s\nwant %s", i, s.path, s.body, got, s.wantBody)
				}
				got := rec.Header().Get("Retry-After")
				switch {
				case rec.Code == http.StatusTooManyRequests && got == "":
					t.Errorf("step %d: 429 without Retry-After", i)
				case rec.Code != http.StatusTooManyRequests && got != "":
					t.Errorf("step %d: status %d with Retry-After %q", i, rec.Code, got)
				case s.wantRetry != "" && got != s.wantRetry:
					t.Errorf("step %d: Retry-After %q, want %q", i, got, s.wantRetry)
				}
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	const lim = `"limit":10,"window":"1m"`
	longKey := strings.Repeat("x", tollgate.DefaultMaxKeyLen+1)
	huge := `{"key":"` + strings.Repeat("x", httpapi.DefaultMaxBodyBytes) + `",` + lim + `}`
	tests := []struct {
		name       string
		method     string // default POST
		path       string
		body       string
		wantStatus int // default 400
		wantCode   httpapi.Code
		wantAllow  string
	}{
		// Body framing.
		{name: "empty body", path: "/v1/consume", body: ``, wantCode: httpapi.CodeInvalidJSON},
		{name: "whitespace body", path: "/v1/consume", body: " \n", wantCode: httpapi.CodeInvalidJSON},
		{name: "truncated", path: "/v1/consume", body: `{"key":"k",`, wantCode: httpapi.CodeInvalidJSON},
		{name: "not JSON", path: "/v1/consume", body: `key=k&limit=10`, wantCode: httpapi.CodeInvalidJSON},
		{name: "unquoted name", path: "/v1/consume", body: `{key:"k",` + lim + `}`, wantCode: httpapi.CodeInvalidJSON},
		{name: "array", path: "/v1/consume", body: `[{"key":"k",` + lim + `}]`, wantCode: httpapi.CodeInvalidJSON},
		{name: "number", path: "/v1/consume", body: `42`, wantCode: httpapi.CodeInvalidJSON},
		{name: "null", path: "/v1/consume", body: `null`, wantCode: httpapi.CodeInvalidJSON},
		{name: "string", path: "/v1/reset", body: `"k"`, wantCode: httpapi.CodeInvalidJSON},
		{name: "names are case-sensitive", path: "/v1/consume", body: `{"KEY":"k","Limit":10,"window":"1m"}`, wantCode: httpapi.CodeInvalidJSON},
		{name: "peek with Cost", path: "/v1/peek", body: `{"key":"k","Cost":1,` + lim + `}`, wantCode: httpapi.CodeInvalidJSON},
		{name: "unknown field", path: "/v1/consume", body: `{"key":"k",` + lim + `,"burst":5}`, wantCode: httpapi.CodeInvalidJSON},
		{name: "peek with cost", path: "/v1/peek", body: `{"key":"k","cost":1,` + lim + `}`, wantCode: httpapi.CodeInvalidJSON},
		{name: "reset with limit", path: "/v1/reset", body: `{"key":"k",` + lim + `}`, wantCode: httpapi.CodeInvalidJSON},
		{name: "trailing object", path: "/v1/consume", body: `{"key":"k",` + lim + `}{"key":"k",` + lim + `}`, wantCode: httpapi.CodeInvalidJSON},
		{name: "trailing brace", path: "/v1/consume", body: `{"key":"k",` + lim + `}}`, wantCode: httpapi.CodeInvalidJSON},
		{name: "trailing garbage", path: "/v1/refund", body: `{"key":"k",` + lim + `} x`, wantCode: httpapi.CodeInvalidJSON},
		{name: "trailing data on reset", path: "/v1/reset", body: `{"key":"k"} 1`, wantCode: httpapi.CodeInvalidJSON},
		{name: "body too large", path: "/v1/consume", body: huge, wantCode: httpapi.CodeBodyTooLarge},
		{name: "body too large by trailing spaces", path: "/v1/consume", body: `{"key":"k",` + lim + `}` + strings.Repeat(" ", httpapi.DefaultMaxBodyBytes), wantCode: httpapi.CodeBodyTooLarge},
		{name: "reset body too large", path: "/v1/reset", body: `{"key":"` + strings.Repeat("x", httpapi.DefaultMaxBodyBytes) + `"}`, wantCode: httpapi.CodeBodyTooLarge},

		// Key.
		{name: "missing key", path: "/v1/consume", body: `{` + lim + `}`, wantCode: httpapi.CodeInvalidKey},
		{name: "empty key", path: "/v1/consume", body: `{"key":"",` + lim + `}`, wantCode: httpapi.CodeInvalidKey},
		{name: "long key", path: "/v1/consume", body: `{"key":"` + longKey + `",` + lim + `}`, wantCode: httpapi.CodeInvalidKey},
		{name: "numeric key", path: "/v1/consume", body: `{"key":42,` + lim + `}`, wantCode: httpapi.CodeInvalidKey},
		{name: "peek empty key", path: "/v1/peek", body: `{"key":"",` + lim + `}`, wantCode: httpapi.CodeInvalidKey},
		{name: "refund long key", path: "/v1/refund", body: `{"key":"` + longKey + `",` + lim + `}`, wantCode: httpapi.CodeInvalidKey},
		{name: "reset empty key", path: "/v1/reset", body: `{"key":""}`, wantCode: httpapi.CodeInvalidKey},
		{name: "reset missing key", path: "/v1/reset", body: `{}`, wantCode: httpapi.CodeInvalidKey},
		{name: "reset long key", path: "/v1/reset", body: `{"key":"` + longKey + `"}`, wantCode: httpapi.CodeInvalidKey},

		// Cost.
		{name: "cost 0", path: "/v1/consume", body: `{"key":"k","cost":0,` + lim + `}`, wantCode: httpapi.CodeInvalidCost},
		{name: "cost -1", path: "/v1/consume", body: `{"key":"k","cost":-1,` + lim + `}`, wantCode: httpapi.CodeInvalidCost},
		{name: "cost 1.5", path: "/v1/consume", body: `{"key":"k","cost":1.5,` + lim + `}`, wantCode: httpapi.CodeInvalidCost},
		{name: "cost 1.0", path: "/v1/consume", body: `{"key":"k","cost":1.0,` + lim + `}`, wantCode: httpapi.CodeInvalidCost},
		{name: "cost 1e0", path: "/v1/consume", body: `{"key":"k","cost":1e0,` + lim + `}`, wantCode: httpapi.CodeInvalidCost},
		{name: "cost string", path: "/v1/consume", body: `{"key":"k","cost":"1",` + lim + `}`, wantCode: httpapi.CodeInvalidCost},
		{name: "cost bool", path: "/v1/consume", body: `{"key":"k","cost":true,` + lim + `}`, wantCode: httpapi.CodeInvalidCost},
		{name: "cost overflow", path: "/v1/consume", body: `{"key":"k","cost":9223372036854775808,` + lim + `}`, wantCode: httpapi.CodeInvalidCost},
		{name: "cost negative overflow", path: "/v1/consume", body: `{"key":"k","cost":-9223372036854775809,` + lim + `}`, wantCode: httpapi.CodeInvalidCost},
		{name: "refund cost 0", path: "/v1/refund", body: `{"key":"k","cost":0,` + lim + `}`, wantCode: httpapi.CodeInvalidCost},
		{name: "refund cost 2.5", path: "/v1/refund", body: `{"key":"k","cost":2.5,` + lim + `}`, wantCode: httpapi.CodeInvalidCost},
		{name: "cost above limit", path: "/v1/consume", body: `{"key":"k","cost":11,` + lim + `}`, wantCode: httpapi.CodeCostExceedsLimit},
		{name: "cost max int64", path: "/v1/consume", body: `{"key":"k","cost":9223372036854775807,` + lim + `}`, wantCode: httpapi.CodeCostExceedsLimit},

		// Limit.
		{name: "missing limit", path: "/v1/consume", body: `{"key":"k","window":"1m"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "null limit", path: "/v1/consume", body: `{"key":"k","limit":null,"window":"1m"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "limit 0", path: "/v1/consume", body: `{"key":"k","limit":0,"window":"1m"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "limit -5", path: "/v1/consume", body: `{"key":"k","limit":-5,"window":"1m"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "limit 1.5", path: "/v1/consume", body: `{"key":"k","limit":1.5,"window":"1m"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "limit 1e3", path: "/v1/consume", body: `{"key":"k","limit":1e3,"window":"1m"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "limit string", path: "/v1/consume", body: `{"key":"k","limit":"10","window":"1m"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "limit object", path: "/v1/consume", body: `{"key":"k","limit":{},"window":"1m"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "limit overflow", path: "/v1/consume", body: `{"key":"k","limit":99999999999999999999,"window":"1m"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "limit above MaxUnits", path: "/v1/consume", body: `{"key":"k","limit":1000000000000001,"window":"1m"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "peek limit 0", path: "/v1/peek", body: `{"key":"k","limit":0,"window":"1m"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "refund missing limit", path: "/v1/refund", body: `{"key":"k","window":"1m"}`, wantCode: httpapi.CodeInvalidLimit},

		// Window.
		{name: "missing window", path: "/v1/consume", body: `{"key":"k","limit":10}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "empty window", path: "/v1/consume", body: `{"key":"k","limit":10,"window":""}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "unparseable window", path: "/v1/consume", body: `{"key":"k","limit":10,"window":"an hour"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "days are not a unit", path: "/v1/consume", body: `{"key":"k","limit":10,"window":"1d"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "numeric window", path: "/v1/consume", body: `{"key":"k","limit":10,"window":3600}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "window 0", path: "/v1/consume", body: `{"key":"k","limit":10,"window":"0s"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "negative window", path: "/v1/consume", body: `{"key":"k","limit":10,"window":"-1h"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "window below 1ms", path: "/v1/consume", body: `{"key":"k","limit":10,"window":"999us"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "window above 30 days", path: "/v1/consume", body: `{"key":"k","limit":10,"window":"720h1ms"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "window overflow", path: "/v1/consume", body: `{"key":"k","limit":10,"window":"9999999999h"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "peek bad window", path: "/v1/peek", body: `{"key":"k","limit":10,"window":"soon"}`, wantCode: httpapi.CodeInvalidLimit},

		// Algorithm.
		{name: "unknown algorithm", path: "/v1/consume", body: `{"key":"k",` + lim + `,"algorithm":"token_bucket"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "algorithm case", path: "/v1/consume", body: `{"key":"k",` + lim + `,"algorithm":"GCRA"}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "numeric algorithm", path: "/v1/consume", body: `{"key":"k",` + lim + `,"algorithm":2}`, wantCode: httpapi.CodeInvalidLimit},
		{name: "refund unknown algorithm", path: "/v1/refund", body: `{"key":"k",` + lim + `,"algorithm":"leaky"}`, wantCode: httpapi.CodeInvalidLimit},

		// Routing.
		{name: "GET consume", method: "GET", path: "/v1/consume", wantStatus: 405, wantCode: httpapi.CodeMethodNotAllowed, wantAllow: "POST"},
		{name: "PUT reset", method: "PUT", path: "/v1/reset", body: `{"key":"k"}`, wantStatus: 405, wantCode: httpapi.CodeMethodNotAllowed, wantAllow: "POST"},
		{name: "DELETE peek", method: "DELETE", path: "/v1/peek", wantStatus: 405, wantCode: httpapi.CodeMethodNotAllowed, wantAllow: "POST"},
		{name: "POST healthz", path: "/healthz", body: `{}`, wantStatus: 405, wantCode: httpapi.CodeMethodNotAllowed, wantAllow: "GET, HEAD"},
		{name: "POST readyz", path: "/readyz", wantStatus: 405, wantCode: httpapi.CodeMethodNotAllowed, wantAllow: "GET, HEAD"},
		{name: "unknown path", path: "/v1/take", body: `{"key":"k",` + lim + `}`, wantStatus: 404, wantCode: httpapi.CodeNotFound},
		{name: "root", method: "GET", path: "/", wantStatus: 404, wantCode: httpapi.CodeNotFound},
		{name: "trailing slash", path: "/v1/consume/", body: `{"key":"k",` + lim + `}`, wantStatus: 404, wantCode: httpapi.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, httpapi.Options{})
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			rec := e.do(method, tt.path, tt.body)
			wantStatus := tt.wantStatus
			if wantStatus == 0 {
				wantStatus = http.StatusBadRequest
			}
			if rec.Code != wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, wantStatus, rec.Body)
			}
			checkJSONHeaders(t, rec)
			if got := decodeError(t, rec.Body.Bytes()).Error.Code; got != tt.wantCode {
				t.Errorf("code %q, want %q; body %s", got, tt.wantCode, rec.Body)
			}
			if got := rec.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow %q, want %q", got, tt.wantAllow)
			}
			checkUnused(t, e.lim.Namespace(httpapi.NamespaceInline), "k")
		})
	}
}

// checkUnused asserts that key has no usage under any algorithm.
func checkUnused(t *testing.T, lim *tollgate.Limiter, key string) {
	t.Helper()
	for _, alg := range []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA} {
		res, err := lim.Peek(context.Background(), key, tollgate.Limit{Units: 10, Window: time.Minute, Algorithm: alg})
		if err != nil {
			t.Fatalf("peek %s: %v", alg, err)
		}
		if res.Used != 0 {
			t.Errorf("bad input changed state: %s used %d", alg, res.Used)
		}
	}
}

func TestBadInputKeepsExistingUsage(t *testing.T) {
	e := newEnv(t, httpapi.Options{})
	if rec := e.do("POST", "/v1/consume", `{"key":"k","cost":4,"limit":10,"window":"1m"}`); rec.Code != 200 {
		t.Fatalf("consume: %d %s", rec.Code, rec.Body)
	}
	for _, body := range []string{
		`{"key":"k","cost":4,"limit":10,"window":"1m"} x`,
		`{"key":"k","cost":4,"limit":10,"window":"1m","extra":1}`,
		`{"key":"k","cost":0,"limit":10,"window":"1m"}`,
		`{"key":"k","cost":4,"limit":10,"window":"1m","algorithm":"nope"}`,
		`{"key":"k","cost":4,"limit":10,"window":"1m"}` + strings.Repeat(" ", httpapi.DefaultMaxBodyBytes),
	} {
		for _, path := range []string{"/v1/consume", "/v1/refund"} {
			if rec := e.do("POST", path, body); rec.Code != 400 {
				t.Errorf("%s %.60s: status %d, want 400", path, body, rec.Code)
			}
		}
	}
	if rec := e.do("POST", "/v1/consume", `{"key":"k","cost":40,"limit":10,"window":"1m"}`); rec.Code != 400 {
		t.Errorf("consume cost above limit: status %d, want 400", rec.Code)
	}
	if rec := e.do("POST", "/v1/reset", `{"key":"k"} {}`); rec.Code != 400 {
		t.Errorf("reset with trailing data: status %d, want 400", rec.Code)
	}
	res, err := e.lim.Namespace(httpapi.NamespaceInline).Peek(context.Background(), "k", tollgate.Limit{Units: 10, Window: time.Minute})
	if err != nil || res.Used != 4 {
		t.Errorf("after bad input: used %d, err %v; want 4, nil", res.Used, err)
	}
}

func TestMaxBodyBytes(t *testing.T) {
	body := `{"key":"k","limit":10,"window":"1m"}`
	tests := []struct {
		max        int64
		wantStatus int
	}{
		{max: int64(len(body)), wantStatus: 200},
		{max: int64(len(body)) - 1, wantStatus: 400},
		{max: 0, wantStatus: 200},  // default
		{max: -1, wantStatus: 200}, // default
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.max), func(t *testing.T) {
			e := newEnv(t, httpapi.Options{MaxBodyBytes: tt.max})
			rec := e.do("POST", "/v1/consume", body)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantStatus == 400 {
				if got := decodeError(t, rec.Body.Bytes()).Error.Code; got != httpapi.CodeBodyTooLarge {
					t.Errorf("code %q, want %q", got, httpapi.CodeBodyTooLarge)
				}
				checkUnused(t, e.lim.Namespace(httpapi.NamespaceInline), "k")
			}
		})
	}
}

// TestOverHTTP goes through a real server on loopback.
func TestOverHTTP(t *testing.T) {
	e := newEnv(t, httpapi.Options{})
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()

	resp, err := client.Post(srv.URL+"/v1/consume", "application/json",
		strings.NewReader(`{"key":"cust-42","cost":3,"limit":100,"window":"1h","algorithm":"sliding_log"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"allowed":true,"limit":100,"used":3,"remaining":97,"retry_after_ms":0,"reset_after_ms":3600000}` + "\n"
	if resp.StatusCode != 200 || string(body) != want {
		t.Errorf("got %d %s, want 200 %s", resp.StatusCode, body, want)
	}

	// A body over the limit is refused without reading it all.
	big := strings.NewReader(`{"key":"` + strings.Repeat("x", 1<<20) + `"}`)
	resp, err = client.Post(srv.URL+"/v1/reset", "application/json", big)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 400 || decodeError(t, body).Error.Code != httpapi.CodeBodyTooLarge {
		t.Errorf("got %d %s, want 400 body_too_large", resp.StatusCode, body)
	}
}

func FuzzConsume(f *testing.F) {
	for _, seed := range []string{
		`{"key":"cust-42","cost":3,"limit":100,"window":"1h","algorithm":"sliding_log"}`,
		`{"key":"k","limit":1,"window":"1ms","algorithm":"gcra"}`,
		`{"key":"k","limit":1000000000000000,"window":"720h","algorithm":"sliding_window"}`,
		`{"key":"k","cost":2,"limit":1,"window":"1s"}`,
		`{"key":"k","cost":-1,"limit":1,"window":"1s"}`,
		`{"key":"k","cost":1.5,"limit":1e3,"window":"1s"}`,
		`{"key":"k","cost":9223372036854775807,"limit":9223372036854775807,"window":"1s"}`,
		`{"key":"k","limit":99999999999999999999999,"window":"1s"}`,
		`{"key":"","limit":1,"window":"1s"}`,
		`{"key":"k","limit":1,"window":"-1s"}`,
		`{"key":"k","limit":1,"window":"1s","x":1}`,
		`{"key":"k","limit":1,"window":"1s"}{}`,
		`{"key":"\ud800","limit":1,"window":"1s"}`,
		`{"key":null,"cost":null,"limit":null,"window":null,"algorithm":null}`,
		`{"key":[],"limit":{},"window":1}`,
		`[]`, `null`, `"x"`, `0`, ``, `{`, `}`, "\xff", `{"key":"k"`,
	} {
		f.Add(seed)
	}
	c := fakeclock.New(t0)
	st := memory.New(memory.Options{Now: c.Now})
	f.Cleanup(func() { _ = st.Close() })
	h := httpapi.New(tollgate.New(st, tollgate.Options{Now: c.Now}), httpapi.Options{})
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/consume", strings.NewReader(body)))
		switch rec.Code {
		case 200, 429:
			var r struct {
				Allowed   bool  `json:"allowed"`
				Limit     int64 `json:"limit"`
				Used      int64 `json:"used"`
				Remaining int64 `json:"remaining"`
				RetryMS   int64 `json:"retry_after_ms"`
				ResetMS   int64 `json:"reset_after_ms"`
			}
			dec := json.NewDecoder(rec.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&r); err != nil {
				t.Fatalf("status %d, body %q: %v", rec.Code, rec.Body, err)
			}
			if r.Allowed != (rec.Code == 200) || r.Remaining < 0 || r.RetryMS < 0 || r.ResetMS < 0 {
				t.Fatalf("inconsistent result %+v for status %d", r, rec.Code)
			}
		case 400:
			decodeError(t, rec.Body.Bytes())
		default:
			t.Fatalf("status %d for body %q: %s", rec.Code, body, rec.Body)
		}
	})
}
