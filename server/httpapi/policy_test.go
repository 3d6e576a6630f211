package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/server/httpapi"
)

const testPolicies = `
policies:
  - name: hourly
    units: 100
    window: 1h
  - name: tiny
    units: 2
    window: 1m
  - name: shadow
    units: 1
    window: 1m
    shadow: true
  - name: fast
    units: 5
    window: 250ms
    algorithm: gcra
  - name: open
    units: 10
    window: 1m
    failure_mode: fail_open
  - name: closed
    units: 10
    window: 1m
    failure_mode: fail_closed
  - name: huge
    units: 1000000000000000
    window: 720h
  - name: q"uo\te
    units: 3
    window: 1s
`

func mustPolicies(t testing.TB) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(testPolicies))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newPolicyEnv(t testing.TB) *env {
	t.Helper()
	return newEnv(t, httpapi.Options{Policies: mustPolicies(t)})
}

// rateLimit returns a response's RateLimit-Policy and RateLimit fields.
func rateLimit(rec *httptest.ResponseRecorder) (string, string) {
	return rec.Header().Get("RateLimit-Policy"), rec.Header().Get("RateLimit")
}

func TestPolicyByName(t *testing.T) {
	e := newPolicyEnv(t)
	steps := []struct {
		advance    time.Duration
		path, body string
		wantStatus int
		wantBody   string
		wantPolicy string // RateLimit-Policy
		wantLimit  string // RateLimit
		wantRetry  string
	}{
		{path: "/v1/consume", body: `{"key":"cust-42","cost":3,"policy":"hourly"}`, wantStatus: 200,
			wantBody:   `{"allowed":true,"limit":100,"used":3,"remaining":97,"retry_after_ms":0,"reset_after_ms":3600000}`,
			wantPolicy: `"hourly";q=100;w=3600`, wantLimit: `"hourly";r=97;t=3600`},
		{path: "/v1/consume", body: `{"key":"k","cost":2,"policy":"tiny"}`, wantStatus: 200,
			wantBody:   `{"allowed":true,"limit":2,"used":2,"remaining":0,"retry_after_ms":0,"reset_after_ms":60000}`,
			wantPolicy: `"tiny";q=2;w=60`, wantLimit: `"tiny";r=0;t=60`},
		{advance: 10 * time.Second, path: "/v1/consume", body: `{"key":"k","policy":"tiny"}`, wantStatus: 429,
			wantBody:   `{"allowed":false,"limit":2,"used":2,"remaining":0,"retry_after_ms":50000,"reset_after_ms":50000}`,
			wantPolicy: `"tiny";q=2;w=60`, wantLimit: `"tiny";r=0;t=50`, wantRetry: "50"},
		{path: "/v1/peek", body: `{"key":"k","policy":"tiny"}`, wantStatus: 429,
			wantPolicy: `"tiny";q=2;w=60`, wantLimit: `"tiny";r=0;t=50`, wantRetry: "50"},
		{path: "/v1/refund", body: `{"key":"k","policy":"tiny"}`, wantStatus: 200,
			wantBody:   `{"allowed":true,"limit":2,"used":1,"remaining":1,"retry_after_ms":0,"reset_after_ms":50000}`,
			wantPolicy: `"tiny";q=2;w=60`, wantLimit: `"tiny";r=1;t=50`},
		// Nothing in use: t is a full window.
		{path: "/v1/peek", body: `{"key":"fresh","policy":"hourly"}`, wantStatus: 200,
			wantBody:   `{"allowed":true,"limit":100,"used":0,"remaining":100,"retry_after_ms":0,"reset_after_ms":0}`,
			wantPolicy: `"hourly";q=100;w=3600`, wantLimit: `"hourly";r=100;t=3600`},
		// A window that is not whole seconds has no w; t rounds up.
		{path: "/v1/consume", body: `{"key":"k","policy":"fast"}`, wantStatus: 200,
			wantPolicy: `"fast";q=5`, wantLimit: `"fast";r=4;t=1`},
		// Integers above the Structured Fields range are capped.
		{path: "/v1/consume", body: `{"key":"k","policy":"huge"}`, wantStatus: 200,
			wantPolicy: `"huge";q=999999999999999;w=2592000`, wantLimit: `"huge";r=999999999999999;t=2592000`},
		// Names are escaped as Structured Fields Strings.
		{path: "/v1/consume", body: `{"key":"k","policy":"q\"uo\\te"}`, wantStatus: 200,
			wantPolicy: `"q\"uo\\te";q=3;w=1`, wantLimit: `"q\"uo\\te";r=2;t=1`},
		// An empty or null policy is absent: the inline limit applies.
		{path: "/v1/consume", body: `{"key":"k","policy":"","limit":5,"window":"1m"}`, wantStatus: 200,
			wantBody:   `{"allowed":true,"limit":5,"used":1,"remaining":4,"retry_after_ms":0,"reset_after_ms":60000}`,
			wantPolicy: `"default";q=5;w=60`, wantLimit: `"default";r=4;t=60`},
		{path: "/v1/consume", body: `{"key":"k","policy":null,"limit":5,"window":"1m"}`, wantStatus: 200,
			wantPolicy: `"default";q=5;w=60`, wantLimit: `"default";r=3;t=60`},
	}
	for i, s := range steps {
		e.clock.Advance(s.advance)
		rec := e.do("POST", s.path, s.body)
		if rec.Code != s.wantStatus {
			t.Fatalf("step %d %s %s: status %d, want %d; body %s", i, s.path, s.body, rec.Code, s.wantStatus, rec.Body)
		}
		checkJSONHeaders(t, rec)
		if got := strings.TrimSuffix(rec.Body.String(), "\n"); s.wantBody != "" && got != s.wantBody {
			t.Errorf("step %d: body\n got %s\nwant %s", i, got, s.wantBody)
		}
		if pol, lim := rateLimit(rec); pol != s.wantPolicy || lim != s.wantLimit {
			t.Errorf("step %d: RateLimit-Policy %q, RateLimit %q; want %q, %q", i, pol, lim, s.wantPolicy, s.wantLimit)
		}
		if got := rec.Header().Get("Retry-After"); got != s.wantRetry {
			t.Errorf("step %d: Retry-After %q, want %q", i, got, s.wantRetry)
		}
	}
}

func TestRateLimitHeadersInline(t *testing.T) {
	e := newEnv(t, httpapi.Options{})
	rec := e.do("POST", "/v1/consume", `{"key":"cust-42","cost":3,"limit":100,"window":"1h"}`)
	if pol, lim := rateLimit(rec); rec.Code != 200 || pol != `"default";q=100;w=3600` || lim != `"default";r=97;t=3600` {
		t.Errorf("200: %d, RateLimit-Policy %q, RateLimit %q", rec.Code, pol, lim)
	}
	rec = e.do("POST", "/v1/consume", `{"key":"cust-42","cost":98,"limit":100,"window":"1h"}`)
	pol, lim := rateLimit(rec)
	if rec.Code != 429 || pol != `"default";q=100;w=3600` || lim != `"default";r=97;t=3600` || rec.Header().Get("Retry-After") != "3600" {
		t.Errorf("429: %d, RateLimit-Policy %q, RateLimit %q, Retry-After %q", rec.Code, pol, lim, rec.Header().Get("Retry-After"))
	}
	// Errors carry no RateLimit fields.
	rec = e.do("POST", "/v1/consume", `{"key":"k","limit":0,"window":"1h"}`)
	if pol, lim := rateLimit(rec); rec.Code != 400 || pol != "" || lim != "" {
		t.Errorf("400: %d, RateLimit-Policy %q, RateLimit %q", rec.Code, pol, lim)
	}
}

func TestPolicyBadInput(t *testing.T) {
	tests := []struct {
		name, path, body string
		wantCode         httpapi.Code
	}{
		{"unknown policy", "/v1/consume", `{"key":"k","policy":"nope"}`, httpapi.CodeUnknownPolicy},
		{"unknown policy on peek", "/v1/peek", `{"key":"k","policy":"nope"}`, httpapi.CodeUnknownPolicy},
		{"unknown policy on refund", "/v1/refund", `{"key":"k","policy":"nope"}`, httpapi.CodeUnknownPolicy},
		{"unknown policy on reset", "/v1/reset", `{"key":"k","policy":"nope"}`, httpapi.CodeUnknownPolicy},
		{"policy names are case-sensitive", "/v1/consume", `{"key":"k","policy":"Hourly"}`, httpapi.CodeUnknownPolicy},
		{"numeric policy", "/v1/consume", `{"key":"k","policy":1}`, httpapi.CodeUnknownPolicy},
		{"policy and limit", "/v1/consume", `{"key":"k","policy":"hourly","limit":10}`, httpapi.CodeInvalidLimit},
		{"policy and window", "/v1/consume", `{"key":"k","policy":"hourly","window":"1h"}`, httpapi.CodeInvalidLimit},
		{"policy and algorithm", "/v1/peek", `{"key":"k","policy":"hourly","algorithm":"gcra"}`, httpapi.CodeInvalidLimit},
		{"policy and all three", "/v1/refund", `{"key":"k","policy":"hourly","limit":10,"window":"1h","algorithm":"gcra"}`, httpapi.CodeInvalidLimit},
		{"unknown policy and limit", "/v1/consume", `{"key":"k","policy":"nope","limit":10,"window":"1h"}`, httpapi.CodeInvalidLimit},
		{"neither policy nor limit", "/v1/consume", `{"key":"k"}`, httpapi.CodeInvalidLimit},
		{"only a window", "/v1/consume", `{"key":"k","window":"1h"}`, httpapi.CodeInvalidLimit},
		{"policy with empty key", "/v1/consume", `{"key":"","policy":"hourly"}`, httpapi.CodeInvalidKey},
		{"policy without key", "/v1/peek", `{"policy":"hourly"}`, httpapi.CodeInvalidKey},
		{"policy with long key", "/v1/consume", `{"key":"` + strings.Repeat("x", tollgate.DefaultMaxKeyLen+1) + `","policy":"hourly"}`, httpapi.CodeInvalidKey},
		{"reset with policy and empty key", "/v1/reset", `{"key":"","policy":"hourly"}`, httpapi.CodeInvalidKey},
		{"policy cost 0", "/v1/consume", `{"key":"k","cost":0,"policy":"hourly"}`, httpapi.CodeInvalidCost},
		{"policy cost above units", "/v1/consume", `{"key":"k","cost":3,"policy":"tiny"}`, httpapi.CodeCostExceedsLimit},
		{"reset with limit", "/v1/reset", `{"key":"k","policy":"hourly","limit":1}`, httpapi.CodeInvalidJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newPolicyEnv(t)
			rec := e.do("POST", tt.path, tt.body)
			if rec.Code != 400 {
				t.Fatalf("status %d, want 400; body %s", rec.Code, rec.Body)
			}
			if got := decodeError(t, rec.Body.Bytes()).Error.Code; got != tt.wantCode {
				t.Errorf("code %q, want %q; body %s", got, tt.wantCode, rec.Body)
			}
		})
	}
	// Without Options.Policies every name is unknown.
	e := newEnv(t, httpapi.Options{})
	if rec := e.do("POST", "/v1/consume", `{"key":"k","policy":"hourly"}`); rec.Code != 400 ||
		decodeError(t, rec.Body.Bytes()).Error.Code != httpapi.CodeUnknownPolicy {
		t.Errorf("no policies: %d %s", rec.Code, rec.Body)
	}
}

// Each policy counts on its own, apart from the inline key.
func TestPolicyCountersAreSeparate(t *testing.T) {
	e := newPolicyEnv(t)
	consume := func(body string) string {
		t.Helper()
		rec := e.do("POST", "/v1/consume", body)
		var r struct{ Used int64 }
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatalf("%s: %d %s", body, rec.Code, rec.Body)
		}
		return fmt.Sprint(rec.Code, " used=", r.Used)
	}
	for _, step := range []struct{ body, want string }{
		{`{"key":"k","cost":2,"policy":"tiny"}`, "200 used=2"},
		{`{"key":"k","cost":5,"policy":"hourly"}`, "200 used=5"},
		{`{"key":"k","cost":7,"limit":100,"window":"1m"}`, "200 used=7"},
		{`{"key":"k","policy":"hourly"}`, "200 used=6"},
		{`{"key":"k","policy":"tiny"}`, "429 used=2"},
	} {
		if got := consume(step.body); got != step.want {
			t.Errorf("%s: %s, want %s", step.body, got, step.want)
		}
	}
	// Reset with a policy forgets that policy's counter only.
	if rec := e.do("POST", "/v1/reset", `{"key":"k","policy":"tiny"}`); rec.Code != 200 {
		t.Fatalf("reset: %d %s", rec.Code, rec.Body)
	}
	if got := consume(`{"key":"k","policy":"tiny"}`); got != "200 used=1" {
		t.Errorf("tiny after its reset: %s", got)
	}
	if got := consume(`{"key":"k","policy":"hourly"}`); got != "200 used=7" {
		t.Errorf("hourly after resetting tiny: %s", got)
	}
	// Reset without a policy forgets the inline key only.
	if rec := e.do("POST", "/v1/reset", `{"key":"k"}`); rec.Code != 200 {
		t.Fatalf("reset: %d %s", rec.Code, rec.Body)
	}
	if got := consume(`{"key":"k","limit":100,"window":"1m"}`); got != "200 used=1" {
		t.Errorf("inline after reset: %s", got)
	}
	if got := consume(`{"key":"k","policy":"hourly"}`); got != "200 used=8" {
		t.Errorf("hourly after the inline reset: %s", got)
	}
	// A key of the longest length works with a long policy name (the store
	// key is hashed).
	long := strings.Repeat("x", tollgate.DefaultMaxKeyLen)
	if got := consume(`{"key":"` + long + `","policy":"hourly"}`); got != "200 used=1" {
		t.Errorf("longest key: %s", got)
	}
	if got := consume(`{"key":"` + long + `","policy":"hourly"}`); got != "200 used=2" {
		t.Errorf("longest key again: %s", got)
	}
}

func TestShadowPolicyNeverDenies(t *testing.T) {
	e := newPolicyEnv(t)
	steps := []struct {
		path, body   string
		wantBody     string
		wantShadow   string
		wantRateLimt string
	}{
		{"/v1/consume", `{"key":"k","policy":"shadow"}`,
			`{"allowed":true,"limit":1,"used":1,"remaining":0,"retry_after_ms":0,"reset_after_ms":60000}`, "", `"shadow";r=0;t=60`},
		// Would be denied: 200, reported, nothing recorded.
		{"/v1/consume", `{"key":"k","policy":"shadow"}`,
			`{"allowed":true,"limit":1,"used":1,"remaining":0,"retry_after_ms":60000,"reset_after_ms":60000,"shadow_denied":true}`, "true", `"shadow";r=0;t=60`},
		{"/v1/peek", `{"key":"k","policy":"shadow"}`,
			`{"allowed":true,"limit":1,"used":1,"remaining":0,"retry_after_ms":60000,"reset_after_ms":60000,"shadow_denied":true}`, "true", `"shadow";r=0;t=60`},
		// A cost that could never fit is a shadow denial too, not a 400.
		{"/v1/consume", `{"key":"other","cost":5,"policy":"shadow"}`,
			`{"allowed":true,"limit":1,"used":0,"remaining":1,"retry_after_ms":0,"reset_after_ms":0,"shadow_denied":true}`, "true", `"shadow";r=1;t=60`},
		// Refund is no decision: reported as is.
		{"/v1/refund", `{"key":"k","policy":"shadow"}`,
			`{"allowed":true,"limit":1,"used":0,"remaining":1,"retry_after_ms":0,"reset_after_ms":0}`, "", `"shadow";r=1;t=60`},
	}
	for i, s := range steps {
		rec := e.do("POST", s.path, s.body)
		if rec.Code != 200 {
			t.Fatalf("step %d %s: status %d, want 200; body %s", i, s.body, rec.Code, rec.Body)
		}
		if got := strings.TrimSuffix(rec.Body.String(), "\n"); got != s.wantBody {
			t.Errorf("step %d: body\n got %s\nwant %s", i, got, s.wantBody)
		}
		if got := rec.Header().Get(httpapi.HeaderShadowDenied); got != s.wantShadow {
			t.Errorf("step %d: %s %q, want %q", i, httpapi.HeaderShadowDenied, got, s.wantShadow)
		}
		if got := rec.Header().Get("Retry-After"); got != "" {
			t.Errorf("step %d: Retry-After %q on a 200", i, got)
		}
		if _, got := rateLimit(rec); got != s.wantRateLimt {
			t.Errorf("step %d: RateLimit %q, want %q", i, got, s.wantRateLimt)
		}
	}
	// The denied consume recorded nothing.
	res, err := e.lim.Namespace(httpapi.PolicyNamespace("shadow")).Peek(context.Background(), "k", tollgate.Limit{Units: 1, Window: time.Minute})
	if err != nil || res.Used != 0 {
		t.Errorf("after refund: used %d, %v", res.Used, err)
	}
}

// unavailableStore fails every call as unavailable, and counts them.
type unavailableStore struct{ calls *int }

func (s unavailableStore) Do(context.Context, tollgate.Request) (tollgate.Decision, error) {
	*s.calls++
	return tollgate.Decision{}, fmt.Errorf("%w: connection refused", tollgate.ErrUnavailable)
}

func (s unavailableStore) Reset(context.Context, string) error {
	*s.calls++
	return fmt.Errorf("%w: connection refused", tollgate.ErrUnavailable)
}

func TestFailureModes(t *testing.T) {
	tests := []struct {
		name, path, body string
		wantStatus       int
		wantBody         string
		wantDegraded     string
		wantPolicy       string
	}{
		{"fail_open consume", "/v1/consume", `{"key":"cust-secret","policy":"open"}`, 200,
			`{"allowed":true,"limit":10,"degraded":"store-unavailable"}`, "store-unavailable", `"open";q=10;w=60`},
		{"fail_open peek", "/v1/peek", `{"key":"cust-secret","policy":"open"}`, 200,
			`{"allowed":true,"limit":10,"degraded":"store-unavailable"}`, "store-unavailable", `"open";q=10;w=60`},
		{"fail_open refund", "/v1/refund", `{"key":"cust-secret","policy":"open"}`, 200,
			`{"allowed":true,"limit":10,"degraded":"store-unavailable"}`, "store-unavailable", `"open";q=10;w=60`},
		{"fail_closed consume", "/v1/consume", `{"key":"cust-secret","policy":"closed"}`, 503, "", "", ""},
		{"default is fail_closed", "/v1/consume", `{"key":"cust-secret","policy":"hourly"}`, 503, "", "", ""},
		{"inline fails closed", "/v1/consume", `{"key":"cust-secret","limit":10,"window":"1m"}`, 503, "", "", ""},
		{"reset fails closed", "/v1/reset", `{"key":"cust-secret","policy":"open"}`, 503, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			calls := 0
			h := httpapi.New(tollgate.New(unavailableStore{&calls}, tollgate.Options{}), httpapi.Options{
				Policies: mustPolicies(t),
				Logger:   slog.New(slog.NewJSONHandler(&logs, nil)),
			})
			req := httptest.NewRequest("POST", tt.path, strings.NewReader(tt.body))
			req.Header.Set(httpapi.HeaderRequestID, "req-1")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if calls != 1 {
				t.Errorf("store called %d times, want 1", calls)
			}
			checkJSONHeaders(t, rec)
			if tt.wantStatus == 503 {
				if got := decodeError(t, rec.Body.Bytes()).Error.Code; got != httpapi.CodeUnavailable {
					t.Errorf("code %q, want unavailable", got)
				}
			} else if got := strings.TrimSuffix(rec.Body.String(), "\n"); got != tt.wantBody {
				t.Errorf("body %s, want %s", got, tt.wantBody)
			}
			if got := rec.Header().Get(httpapi.HeaderDegraded); got != tt.wantDegraded {
				t.Errorf("%s %q, want %q", httpapi.HeaderDegraded, got, tt.wantDegraded)
			}
			if pol, lim := rateLimit(rec); pol != tt.wantPolicy || lim != "" {
				t.Errorf("RateLimit-Policy %q, RateLimit %q; want %q and none", pol, lim, tt.wantPolicy)
			}
			// One warning with the error and request id, never the key.
			var rec0 struct {
				Level, Msg, Error string
				RequestID         string `json:"request_id"`
			}
			if err := json.Unmarshal(logs.Bytes(), &rec0); err != nil {
				t.Fatalf("want one JSON log record, got %q: %v", logs.String(), err)
			}
			if rec0.Level != "WARN" || !strings.Contains(rec0.Error, "connection refused") || rec0.RequestID != "req-1" {
				t.Errorf("log %s: want a WARN record with the error and request_id req-1", logs.String())
			}
			if strings.Contains(logs.String(), "cust-secret") {
				t.Errorf("log contains the key: %s", logs.String())
			}
		})
	}
}

// reloadable is a Policies whose policies a test swaps.
type reloadable struct{ c *config.Config }

func (r *reloadable) Policy(name string) (policy.Policy, bool) { return r.c.Policy(name) }

func TestPoliciesAreLookedUpPerRequest(t *testing.T) {
	pols := &reloadable{c: mustPolicies(t)}
	e := newEnv(t, httpapi.Options{Policies: pols})
	if rec := e.do("POST", "/v1/consume", `{"key":"k","cost":2,"policy":"tiny"}`); rec.Code != 200 {
		t.Fatalf("consume: %d %s", rec.Code, rec.Body)
	}
	if rec := e.do("POST", "/v1/consume", `{"key":"k","policy":"tiny"}`); rec.Code != 429 {
		t.Fatalf("consume over the limit: %d %s", rec.Code, rec.Body)
	}
	c, err := config.Parse([]byte("policies:\n  - name: tiny\n    units: 3\n    window: 1m\n"))
	if err != nil {
		t.Fatal(err)
	}
	pols.c = c
	if rec := e.do("POST", "/v1/consume", `{"key":"k","policy":"tiny"}`); rec.Code != 200 {
		t.Errorf("consume after raising the limit: %d %s", rec.Code, rec.Body)
	}
	if rec := e.do("POST", "/v1/consume", `{"key":"k","policy":"hourly"}`); rec.Code != 400 {
		t.Errorf("removed policy: %d %s", rec.Code, rec.Body)
	}
}

func TestTokens(t *testing.T) {
	opts := httpapi.Options{
		APITokens:   []string{"api-token-1", "api-token-2", ""},
		AdminTokens: []string{"admin-token"},
	}
	const consume = `{"key":"k","limit":10,"window":"1m"}`
	tests := []struct {
		name       string
		opts       httpapi.Options
		method     string
		path, body string
		auth       string // Authorization header
		wantStatus int
		wantCode   httpapi.Code
		wantWWW    string
	}{
		{"no tokens configured: open", httpapi.Options{}, "POST", "/v1/consume", consume, "", 200, "", ""},
		{"no tokens configured: reset open", httpapi.Options{}, "POST", "/v1/reset", `{"key":"k"}`, "", 200, "", ""},
		{"no tokens configured: a token is ignored", httpapi.Options{}, "POST", "/v1/consume", consume, "Bearer whatever", 200, "", ""},

		{"missing token", opts, "POST", "/v1/consume", consume, "", 401, httpapi.CodeUnauthorized, `Bearer realm="tollgate"`},
		{"wrong token", opts, "POST", "/v1/consume", consume, "Bearer api-token-3", 401, httpapi.CodeUnauthorized, `Bearer realm="tollgate", error="invalid_token"`},
		{"prefix of a token", opts, "POST", "/v1/consume", consume, "Bearer api-token", 401, httpapi.CodeUnauthorized, ""},
		{"token with a suffix", opts, "POST", "/v1/consume", consume, "Bearer api-token-11", 401, httpapi.CodeUnauthorized, ""},
		{"empty token", opts, "POST", "/v1/consume", consume, "Bearer ", 401, httpapi.CodeUnauthorized, ""},
		{"empty token matches no empty entry", opts, "POST", "/v1/consume", consume, "Bearer", 401, httpapi.CodeUnauthorized, ""},
		{"basic auth", opts, "POST", "/v1/consume", consume, "Basic YXBpLXRva2VuLTE6", 401, httpapi.CodeUnauthorized, ""},
		{"bare token", opts, "POST", "/v1/consume", consume, "api-token-1", 401, httpapi.CodeUnauthorized, ""},
		{"api token", opts, "POST", "/v1/consume", consume, "Bearer api-token-1", 200, "", ""},
		{"second api token", opts, "POST", "/v1/peek", consume, "Bearer api-token-2", 200, "", ""},
		{"scheme is case-insensitive", opts, "POST", "/v1/refund", consume, "bearer api-token-1", 200, "", ""},
		{"admin token on consume", opts, "POST", "/v1/consume", consume, "Bearer admin-token", 200, "", ""},
		{"reset without token", opts, "POST", "/v1/reset", `{"key":"k"}`, "", 401, httpapi.CodeUnauthorized, ""},
		{"reset with api token", opts, "POST", "/v1/reset", `{"key":"k"}`, "Bearer api-token-1", 403, httpapi.CodeForbidden,
			`Bearer realm="tollgate", error="insufficient_scope"`},
		{"reset with admin token", opts, "POST", "/v1/reset", `{"key":"k"}`, "Bearer admin-token", 200, "", ""},
		{"unknown /v1 path needs a token first", opts, "POST", "/v1/nope", consume, "", 401, httpapi.CodeUnauthorized, ""},
		{"unknown /v1 path with a token", opts, "POST", "/v1/nope", consume, "Bearer api-token-1", 404, httpapi.CodeNotFound, ""},
		{"wrong method needs a token first", opts, "GET", "/v1/consume", "", "", 401, httpapi.CodeUnauthorized, ""},
		{"healthz is open", opts, "GET", "/healthz", "", "", 200, "", ""},
		{"readyz is open", opts, "GET", "/readyz", "", "", 200, "", ""},

		{"admin tokens only: consume open", httpapi.Options{AdminTokens: []string{"admin-token"}}, "POST", "/v1/consume", consume, "", 200, "", ""},
		{"admin tokens only: reset needs one", httpapi.Options{AdminTokens: []string{"admin-token"}}, "POST", "/v1/reset", `{"key":"k"}`, "", 401, httpapi.CodeUnauthorized, ""},
		{"admin tokens only: reset with one", httpapi.Options{AdminTokens: []string{"admin-token"}}, "POST", "/v1/reset", `{"key":"k"}`, "Bearer admin-token", 200, "", ""},
		{"api tokens only: nobody resets", httpapi.Options{APITokens: []string{"api-token-1"}}, "POST", "/v1/reset", `{"key":"k"}`, "Bearer api-token-1", 403, httpapi.CodeForbidden, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			var body *strings.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			var req *http.Request
			if body != nil {
				req = httptest.NewRequest(tt.method, tt.path, body)
			} else {
				req = httptest.NewRequest(tt.method, tt.path, nil)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.wantStatus, rec.Body)
			}
			checkJSONHeaders(t, rec)
			if tt.wantCode != "" {
				if got := decodeError(t, rec.Body.Bytes()).Error.Code; got != tt.wantCode {
					t.Errorf("code %q, want %q", got, tt.wantCode)
				}
			}
			if got := rec.Header().Get("WWW-Authenticate"); tt.wantWWW != "" && got != tt.wantWWW {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.wantWWW)
			}
			if tt.wantStatus == 401 || tt.wantStatus == 403 {
				checkUnused(t, e.lim.Namespace(httpapi.NamespaceInline), "k")
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	var logs bytes.Buffer
	var seen []string
	e := newEnv(t, httpapi.Options{
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Ready: func(ctx context.Context) error {
			seen = append(seen, httpapi.RequestID(ctx))
			return errors.New("not yet")
		},
	})
	send := func(path, id string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", path, strings.NewReader(`{"key":"k","limit":1,"window":"1m"}`))
		if path == "/readyz" {
			req = httptest.NewRequest("GET", path, nil)
		}
		if id != "" {
			req.Header.Set(httpapi.HeaderRequestID, id)
		}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		return rec
	}

	// A valid id is echoed, on every kind of response, and logged.
	for _, path := range []string{"/v1/consume", "/v1/consume", "/v1/nope", "/readyz"} {
		if got := send(path, "abc-123_XYZ.4/5").Header().Get(httpapi.HeaderRequestID); got != "abc-123_XYZ.4/5" {
			t.Errorf("%s: X-Request-Id %q, want the request's", path, got)
		}
	}
	if len(seen) != 1 || seen[0] != "abc-123_XYZ.4/5" {
		t.Errorf("RequestID in the context: %q", seen)
	}
	if n := strings.Count(logs.String(), `"request_id":"abc-123_XYZ.4/5"`); n != 3 { // 2 consumes, 1 not ready
		t.Errorf("%d log records with the request id, want 3:\n%s", n, logs.String())
	}

	// A missing or invalid one is replaced by a fresh one each time.
	got := map[string]bool{}
	for _, id := range []string{"", "has space", "tab\tin", strings.Repeat("x", httpapi.MaxRequestIDLen+1), "é"} {
		rid := send("/v1/consume", id).Header().Get(httpapi.HeaderRequestID)
		if rid == "" || rid == id || len(rid) > httpapi.MaxRequestIDLen || got[rid] {
			t.Errorf("request id %q: got %q, want a new one", id, rid)
		}
		got[rid] = true
	}
	if rid := send("/v1/consume", strings.Repeat("x", httpapi.MaxRequestIDLen)).Header().Get(httpapi.HeaderRequestID); len(rid) != httpapi.MaxRequestIDLen {
		t.Errorf("longest id not kept: %q", rid)
	}
}
