package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/server/httpapi"
)

// batchEntry is one result of a batch, as the client sees it.
type batchEntry struct {
	Status   int            `json:"status"`
	Body     map[string]any `json:"body"`
	Degraded string         `json:"degraded"`
}

// batchOf is the body of a batch of these checks.
func batchOf(checks ...string) string {
	return `{"checks":[` + strings.Join(checks, ",") + `]}`
}

// doBatch posts body to /v1/batch with token ("" for none) and ctx.
func (e *env) doBatch(ctx context.Context, token, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/batch", strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// decodeBatch checks that rec is a batch answer and returns its results.
func decodeBatch(t *testing.T, rec *httptest.ResponseRecorder) []batchEntry {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", rec.Code, rec.Body)
	}
	checkJSONHeaders(t, rec)
	for _, h := range []string{"RateLimit", "RateLimit-Policy", "Retry-After", httpapi.HeaderDegraded, httpapi.HeaderShadowDenied} {
		if v := rec.Header().Get(h); v != "" {
			t.Errorf("a batch answer has %s: %q", h, v)
		}
	}
	var got struct {
		Results []batchEntry `json:"results"`
	}
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("body %s: %v", rec.Body, err)
	}
	return got.Results
}

// usedOf is the used units of a peek body's key, read with /v1/peek as
// token (which changes nothing).
func (e *env) usedOf(t *testing.T, token, peek string) float64 {
	t.Helper()
	rec := e.doAuth(http.MethodPost, "/v1/peek", peek, token)
	var r struct{ Used float64 }
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || (rec.Code != 200 && rec.Code != 429) {
		t.Fatalf("peek %s: %d %s", peek, rec.Code, rec.Body)
	}
	return r.Used
}

// want is what a batch's result must be: its status and, when not zero,
// its body's used, limit or error code.
type want struct {
	status      int
	used, limit float64
	code        httpapi.Code
	degraded    string
	shadow      bool
}

func TestBatch(t *testing.T) {
	tenant, _ := httpapi.ParseScope([]string{"policies=tiny,h*", "inline=false", "ops=check"}, httpapi.APIScope())
	refunder, _ := httpapi.ParseScope([]string{"policies=*", "ops=refund"}, httpapi.APIScope())
	opts := httpapi.Options{
		Policies:        mustPolicies(t),
		APITokens:       []string{"full"},
		ScopedAPITokens: []httpapi.Token{{Secret: "tenant", Scope: tenant}, {Secret: "refunder", Scope: refunder}},
		MaxBatchChecks:  4,
	}
	// Usage probes: each key's peek, read after every case.
	const (
		peekA    = `{"key":"a","limit":3,"window":"1m"}`
		peekB    = `{"key":"b","limit":3,"window":"1m"}`
		peekTiny = `{"key":"a","policy":"tiny"}`
	)
	tests := []struct {
		name   string
		token  string
		before []string // consumes of /v1/consume first
		checks []string
		// status and code of a refused batch; 0 for 200
		status int
		code   httpapi.Code
		msg    string // in a refused batch's message
		want   []want
		// used is the usage after the batch of a, b and a under tiny.
		used [3]float64
	}{
		{
			name: "in order, mixed allowed and denied",
			// b is full: its consume and its peek are denied.
			before: []string{`{"key":"b","cost":3,"limit":3,"window":"1m"}`},
			checks: []string{
				`{"key":"a","cost":2,"limit":3,"window":"1m"}`,
				`{"key":"b","limit":3,"window":"1m"}`,
				`{"key":"c","op":"peek","limit":7,"window":"1h"}`,
				`{"key":"b","op":"peek","limit":3,"window":"1m","algorithm":null}`,
			},
			want: []want{{status: 200, used: 2, limit: 3}, {status: 429, used: 3, limit: 3}, {status: 200, used: 0, limit: 7}, {status: 429, used: 3, limit: 3}},
			used: [3]float64{2, 3, 0},
		},
		{
			name:   "policies, shadow and an explicit consume",
			token:  "tenant",
			checks: []string{`{"key":"a","policy":"tiny","op":"consume"}`, `{"key":"a","policy":"hourly","cost":5,"op":null}`},
			want:   []want{{status: 200, used: 1, limit: 2}, {status: 200, used: 5, limit: 100}},
			used:   [3]float64{0, 0, 1},
		},
		{
			name:   "a shadow policy's cost over its units is a shadow denial, not a refusal",
			checks: []string{`{"key":"a","policy":"shadow","cost":2}`},
			want:   []want{{status: 200, used: 0, limit: 1, shadow: true}},
		},
		{
			name:   "more checks than MaxBatchChecks: nothing is consumed",
			checks: []string{peekA, peekA, peekA, `{"key":"a","limit":3,"window":"1m"}`, `{"key":"a","limit":3,"window":"1m"}`},
			status: 400, code: httpapi.CodeTooManyChecks, msg: "5 checks",
		},
		{name: "no checks", checks: []string{}, status: 400, code: httpapi.CodeInvalidJSON},
		{
			name:   "an invalid check refuses the batch: nothing is consumed",
			checks: []string{`{"key":"a","limit":3,"window":"1m"}`, `{"key":"b","cost":0,"limit":3,"window":"1m"}`},
			status: 400, code: httpapi.CodeInvalidCost, msg: "checks[1]: ",
		},
		{
			name:   "an empty key, found by the Limiter's own checks before any check runs",
			checks: []string{`{"key":"a","limit":3,"window":"1m"}`, `{"key":"","limit":3,"window":"1m"}`},
			status: 400, code: httpapi.CodeInvalidKey, msg: "checks[1]: ",
		},
		{
			name:   "a cost over the limit",
			checks: []string{`{"key":"a","limit":3,"window":"1m"}`, `{"key":"b","cost":4,"limit":3,"window":"1m"}`},
			status: 400, code: httpapi.CodeCostExceedsLimit, msg: "checks[1]: ",
		},
		{
			name:   "repeated limits",
			checks: []string{`{"key":"a","limit":3,"window":"1m"}`, `{"key":"b","limits":[{"limit":3,"window":"1m"},{"limit":4,"window":"60s"}]}`},
			status: 400, code: httpapi.CodeInvalidLimit, msg: "checks[1]: ",
		},
		{
			name:   "a peek with a cost",
			checks: []string{`{"key":"a","limit":3,"window":"1m"}`, `{"key":"b","op":"peek","cost":1,"limit":3,"window":"1m"}`},
			status: 400, code: httpapi.CodeInvalidJSON, msg: `checks[1]: unknown field "cost"`,
		},
		{
			name:   "an unknown op",
			checks: []string{`{"key":"a","limit":3,"window":"1m"}`, `{"key":"b","op":"refund","limit":3,"window":"1m"}`},
			status: 400, code: httpapi.CodeInvalidJSON, msg: "checks[1]: op",
		},
		{
			name:   "a check that is not an object",
			checks: []string{`{"key":"a","limit":3,"window":"1m"}`, `[1]`},
			status: 400, code: httpapi.CodeInvalidJSON, msg: "checks[1]: ",
		},
		{
			name:   "an unknown policy",
			checks: []string{`{"key":"a","limit":3,"window":"1m"}`, `{"key":"b","policy":"nope"}`},
			status: 400, code: httpapi.CodeUnknownPolicy, msg: "checks[1]: ",
		},
		{
			name:   "a request_id over 128 bytes",
			checks: []string{`{"key":"a","limit":3,"window":"1m"}`, `{"key":"b","limit":3,"window":"1m","request_id":"` + strings.Repeat("x", 129) + `"}`},
			status: 400, code: httpapi.CodeInvalidRequestID, msg: "checks[1]: ",
		},
		{
			name:   "a request_id repeated on one key: refused",
			checks: []string{`{"key":"a","limit":3,"window":"1m","request_id":"r"}`, `{"key":"a","limit":3,"window":"1m","request_id":"r"}`},
			status: 400, code: httpapi.CodeInvalidRequestID, msg: "checks[1]: ",
		},
		{
			name:   "a request_id repeated on other keys: both count",
			checks: []string{`{"key":"a","limit":3,"window":"1m","request_id":"r"}`, `{"key":"b","limit":3,"window":"1m","request_id":"r"}`},
			want:   []want{{status: 200, used: 1}, {status: 200, used: 1}},
			used:   [3]float64{1, 1, 0},
		},
		{
			name:   "a check out of the token's scope: 403, nothing is consumed",
			token:  "tenant",
			checks: []string{`{"key":"a","policy":"tiny"}`, `{"key":"a","limit":3,"window":"1m"}`},
			status: 403, code: httpapi.CodeForbidden, msg: "checks[1]: ",
		},
		{
			name:  "403 before an unknown policy in scope is looked up",
			token: "tenant",
			// h-missing is in scope but does not exist; the other is out of scope.
			checks: []string{`{"key":"a","policy":"tiny"}`, `{"key":"a","policy":"h-missing"}`, `{"key":"a","policy":"shadow"}`},
			status: 403, code: httpapi.CodeForbidden, msg: "checks[2]: ",
		},
		{
			name:   "a token without check in its scope",
			token:  "refunder",
			checks: []string{`{"key":"a","policy":"tiny"}`},
			status: 403, code: httpapi.CodeForbidden,
		},
		{
			name:   "no token",
			token:  "-",
			checks: []string{`{"key":"a","policy":"tiny"}`},
			status: 401, code: httpapi.CodeUnauthorized,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, opts)
			for _, b := range tt.before {
				if rec := e.doAuth(http.MethodPost, "/v1/consume", b, "full"); rec.Code != 200 {
					t.Fatalf("before: %s: %d %s", b, rec.Code, rec.Body)
				}
			}
			before := [3]float64{e.usedOf(t, "full", peekA), e.usedOf(t, "full", peekB), e.usedOf(t, "full", peekTiny)}
			token := tt.token
			switch token {
			case "":
				token = "full"
			case "-":
				token = ""
			}
			rec := e.doBatch(context.Background(), token, batchOf(tt.checks...))
			after := [3]float64{e.usedOf(t, "full", peekA), e.usedOf(t, "full", peekB), e.usedOf(t, "full", peekTiny)}
			if tt.status != 0 {
				if rec.Code != tt.status {
					t.Fatalf("status %d, want %d; body %s", rec.Code, tt.status, rec.Body)
				}
				got := decodeError(t, rec.Body.Bytes())
				if got.Error.Code != tt.code || !strings.Contains(got.Error.Message, tt.msg) {
					t.Errorf("error %+v, want code %s and a message with %q", got.Error, tt.code, tt.msg)
				}
				if after != before {
					t.Errorf("a refused batch changed usage: %v, was %v", after, before)
				}
				return
			}
			results := decodeBatch(t, rec)
			if len(results) != len(tt.want) {
				t.Fatalf("%d results, want %d: %s", len(results), len(tt.want), rec.Body)
			}
			for i, w := range tt.want {
				r := results[i]
				if r.Status != w.status || r.Body["used"] != w.used || (w.limit != 0 && r.Body["limit"] != w.limit) ||
					r.Degraded != w.degraded || (r.Body["shadow_denied"] == true) != w.shadow {
					t.Errorf("results[%d] = %+v, want %+v", i, r, w)
				}
			}
			if after != tt.used {
				t.Errorf("usage after of a, b, tiny a: %v, want %v", after, tt.used)
			}
		})
	}
}

// A batch's body is checked as any other: one object of known fields,
// checks a list.
func TestBatchBadBody(t *testing.T) {
	e := newEnv(t, httpapi.Options{})
	for _, body := range []string{``, `{`, `[]`, `{"checks":null}`, `{}`, `{"checks":{}}`, `{"Checks":[]}`, `{"checks":[],"x":1}`, `{"checks":[]} {}`} {
		rec := e.doBatch(context.Background(), "", body)
		if rec.Code != 400 {
			t.Errorf("%s: status %d, want 400", body, rec.Code)
			continue
		}
		if got := decodeError(t, rec.Body.Bytes()); got.Error.Code != httpapi.CodeInvalidJSON {
			t.Errorf("%s: code %s, want invalid_json", body, got.Error.Code)
		}
	}
	if rec := e.do(http.MethodGet, "/v1/batch", ""); rec.Code != 405 || rec.Header().Get("Allow") != "POST" {
		t.Errorf("GET: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

// The default bound is DefaultMaxBatchChecks.
func TestBatchDefaultMax(t *testing.T) {
	e := newEnv(t, httpapi.Options{MaxBodyBytes: 1 << 20})
	check := `{"key":"k","op":"peek","limit":3,"window":"1m"}`
	checks := make([]string, httpapi.DefaultMaxBatchChecks)
	for i := range checks {
		checks[i] = check
	}
	if results := decodeBatch(t, e.doBatch(context.Background(), "", batchOf(checks...))); len(results) != len(checks) {
		t.Fatalf("%d results", len(results))
	}
	rec := e.doBatch(context.Background(), "", batchOf(append(checks, check)...))
	if got := decodeError(t, rec.Body.Bytes()); rec.Code != 400 || got.Error.Code != httpapi.CodeTooManyChecks {
		t.Errorf("one over: %d %+v", rec.Code, got)
	}
}

// Many checks of one key in one batch run at once and each is counted
// once: the allowed ones are exactly the limit.
func TestBatchConcurrentChecksOfOneKey(t *testing.T) {
	e := newEnv(t, httpapi.Options{})
	checks := make([]string, 100)
	for i := range checks {
		checks[i] = `{"key":"k","limit":40,"window":"1h"}`
	}
	allowed := 0
	for _, r := range decodeBatch(t, e.doBatch(context.Background(), "", batchOf(checks...))) {
		switch r.Status {
		case 200:
			allowed++
		case 429:
		default:
			t.Errorf("result %+v", r)
		}
	}
	if allowed != 40 {
		t.Errorf("%d allowed, want 40", allowed)
	}
}

// A request_id deduplicates across batches as on /v1/consume: the same
// batch sent again counts nothing.
func TestBatchRequestIDRetry(t *testing.T) {
	e := newEnv(t, httpapi.Options{})
	body := batchOf(`{"key":"a","cost":2,"limit":3,"window":"1m","request_id":"r-1"}`, `{"key":"b","limit":3,"window":"1m","request_id":"r-1"}`)
	for i := range 2 {
		for j, r := range decodeBatch(t, e.doBatch(context.Background(), "", body)) {
			if r.Status != 200 || r.Body["used"] != float64(2-j) {
				t.Errorf("send %d: results[%d] = %+v", i, j, r)
			}
		}
	}
}

// A batch whose request is cancelled answers each check as the store does
// for a cancelled call (unavailable), without hanging, and records
// nothing.
func TestBatchCancelled(t *testing.T) {
	e := newEnv(t, httpapi.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	checks := make([]string, 50)
	for i := range checks {
		checks[i] = fmt.Sprintf(`{"key":"k%d","limit":3,"window":"1m"}`, i%3)
	}
	for i, r := range decodeBatch(t, e.doBatch(ctx, "", batchOf(checks...))) {
		if r.Status != 503 || r.Body["error"].(map[string]any)["code"] != string(httpapi.CodeUnavailable) {
			t.Errorf("results[%d] = %+v", i, r)
		}
	}
	for i := range 3 {
		checkUnused(t, e.lim.Namespace(httpapi.NamespaceInline), fmt.Sprintf("k%d", i))
	}
}

// Store failures are per check: a fail_open policy's check is let through
// degraded, an inline limit's fails closed; the batch is 200.
func TestBatchStoreDown(t *testing.T) {
	down := failingStore{fmt.Errorf("%w: connection refused", tollgate.ErrUnavailable)}
	h := httpapi.New(tollgate.New(down, tollgate.Options{}), httpapi.Options{Policies: mustPolicies(t)})
	e := &env{h: h}
	results := decodeBatch(t, e.doBatch(context.Background(), "", batchOf(
		`{"key":"a","policy":"open"}`, `{"key":"a","limit":3,"window":"1m"}`, `{"key":"a","policy":"closed","op":"peek"}`)))
	if len(results) != 3 || results[0].Status != 200 || results[0].Body["degraded"] != "store-unavailable" || results[0].Degraded != "store-unavailable" ||
		results[1].Status != 503 || results[2].Status != 503 {
		t.Errorf("results %+v", results)
	}
}

// A panic while answering one check is that check's 500; the others are
// answered and the handler goes on.
func TestBatchPanic(t *testing.T) {
	h := httpapi.New(tollgate.New(panicOnKey{"boom"}, tollgate.Options{}), httpapi.Options{})
	e := &env{h: h}
	results := decodeBatch(t, e.doBatch(context.Background(), "", batchOf(
		`{"key":"ok","limit":3,"window":"1m"}`, `{"key":"boom","limit":3,"window":"1m"}`, `{"key":"ok2","limit":3,"window":"1m"}`)))
	if len(results) != 3 || results[0].Status != 200 || results[1].Status != 500 || results[2].Status != 200 {
		t.Errorf("results %+v", results)
	}
}

// panicOnKey answers every call allowed, but panics on the key named.
type panicOnKey struct{ key string }

func (p panicOnKey) Do(_ context.Context, req tollgate.Request) (tollgate.Decision, error) {
	if strings.HasSuffix(req.Key, ":"+p.key) {
		panic("store bug")
	}
	res := make([]tollgate.Result, len(req.Limits))
	for i, l := range req.Limits {
		res[i] = tollgate.Result{Allowed: true, Limit: l.Units, Used: req.Cost, Remaining: l.Units - req.Cost}
	}
	return tollgate.Decision{Allowed: true, Results: res}, nil
}

func (panicOnKey) Reset(context.Context, string) error { return nil }
