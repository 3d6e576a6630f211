package httpapi_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/config"
	"github.com/tollgate/tollgate/server/httpapi"
)

type limitsBody struct {
	Allowed      bool  `json:"allowed"`
	Limit        int64 `json:"limit"`
	Used         int64 `json:"used"`
	RetryAfterMS int64 `json:"retry_after_ms"`
	Limits       []struct {
		Name    string `json:"name"`
		Limit   int64  `json:"limit"`
		Allowed bool   `json:"allowed"`
		Used    int64  `json:"used"`
	} `json:"limits"`
}

// Inline limits: all or nothing, each limit's figures, the tightest in the
// top-level fields and RateLimit, every limit in RateLimit-Policy.
func TestInlineLimits(t *testing.T) {
	e := newEnv(t, httpapi.Options{})
	const body = `{"key":"k","cost":3,"limits":[{"limit":5,"window":"1s","algorithm":"gcra"},{"limit":100,"window":"1h"}]}`
	rec := e.do("POST", "/v1/consume", body)
	var got limitsBody
	if err := json.Unmarshal(rec.Body.Bytes(), &got); rec.Code != 200 || err != nil {
		t.Fatalf("first consume: %d %s", rec.Code, rec.Body)
	}
	if !got.Allowed || len(got.Limits) != 2 || got.Limits[0].Used != 3 || got.Limits[1].Used != 3 || got.Limit != 5 {
		t.Errorf("first consume: %+v", got)
	}
	if h := rec.Header().Get("RateLimit-Policy"); h != `"default/1s";q=5;w=1, "default/1h";q=100;w=3600` {
		t.Errorf("RateLimit-Policy %s", h)
	}
	if h := rec.Header().Get("RateLimit"); h != `"default/1s";r=2;t=1` {
		t.Errorf("RateLimit %s", h)
	}
	// 3 more do not fit the burst: denied, nothing recorded in the hour.
	rec = e.do("POST", "/v1/consume", body)
	got = limitsBody{}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); rec.Code != 429 || err != nil {
		t.Fatalf("second consume: %d %s", rec.Code, rec.Body)
	}
	if got.Allowed || got.Limits[0].Allowed || !got.Limits[1].Allowed || got.RetryAfterMS <= 0 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("second consume: %+v, Retry-After %q", got, rec.Header().Get("Retry-After"))
	}
	inline := e.lim.Namespace(httpapi.NamespaceInline)
	if r, err := inline.Peek(context.Background(), "k", tollgate.Limit{Units: 100, Window: time.Hour}); err != nil || r.Used != 3 {
		t.Errorf("the hour after a denied consume: used %d, %v; want 3", r.Used, err)
	}
	// Bad lists change nothing.
	for _, bad := range []string{
		`{"key":"k","limits":[]}`,
		`{"key":"k","limits":{}}`,
		`{"key":"k","limits":[{"limit":5}]}`,
		`{"key":"k","limits":[{"limit":5,"window":"1s","Limit":3}]}`,
		`{"key":"k","limits":[{"limit":5,"window":"1s","extra":1}]}`,
		`{"key":"k","limits":[{"limit":5,"window":"1h"},{"limit":6,"window":"60m"}]}`,
		`{"key":"k","limit":5,"window":"1h","limits":[{"limit":5,"window":"1s"}]}`,
		`{"key":"k","policy":"p","limits":[{"limit":5,"window":"1s"}]}`,
		`{"key":"k","limits":[1,2,3,4,5,6,7,8,9]}`,
	} {
		rec := e.do("POST", "/v1/consume", bad)
		if rec.Code != 400 || decodeError(t, rec.Body.Bytes()).Error.Code != httpapi.CodeInvalidLimit {
			t.Errorf("%s: %d %s, want 400 invalid_limit", bad, rec.Code, rec.Body)
		}
	}
	if r, _ := inline.Peek(context.Background(), "k", tollgate.Limit{Units: 100, Window: time.Hour}); r.Used != 3 {
		t.Errorf("after bad lists: used %d, want 3", r.Used)
	}
}

// A policy of several limits lists them in its answers and counts in its
// own namespace, apart from inline limits of the same key.
func TestPolicyLimits(t *testing.T) {
	c, err := config.Parse([]byte(`policies:
  - name: tiered
    limits:
      - {units: 2, window: 1m}
      - {units: 3, window: 1h, algorithm: sliding_window}
`))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, httpapi.Options{Policies: c})
	for i, want := range []int{200, 200, 429} {
		rec := e.do("POST", "/v1/consume", `{"key":"k","policy":"tiered"}`)
		if rec.Code != want {
			t.Fatalf("consume %d: %d %s, want %d", i, rec.Code, rec.Body, want)
		}
	}
	e.clock.Set(t0.Add(2 * time.Minute)) // the minute is over, the hour is not
	rec := e.do("POST", "/v1/consume", `{"key":"k","policy":"tiered"}`)
	var got limitsBody
	if err := json.Unmarshal(rec.Body.Bytes(), &got); rec.Code != 200 || err != nil {
		t.Fatalf("consume after the minute: %d %s", rec.Code, rec.Body)
	}
	if got.Limits[0].Name != "tiered/1m" || got.Limits[0].Used != 1 || got.Limits[1].Used != 3 || got.Limit != 3 {
		t.Errorf("after the minute: %+v; want 1 of 2 and 3 of 3 used, the hour the tightest", got)
	}
	if rec := e.do("POST", "/v1/consume", `{"key":"k","policy":"tiered"}`); rec.Code != 429 {
		t.Errorf("the hour is full: %d %s", rec.Code, rec.Body)
	}
	// The inline key k is another namespace.
	if rec := e.do("POST", "/v1/consume", `{"key":"k","limit":1,"window":"1m"}`); rec.Code != 200 {
		t.Errorf("inline k: %d %s", rec.Code, rec.Body)
	}
}

// The repros: a peek under a shorter window changes nothing, and an
// inline key built like an old policy key does not reach the policy.
func TestStateIsPerWindowAndNamespace(t *testing.T) {
	c, err := config.Parse([]byte("policies:\n  - name: premium\n    units: 3\n    window: 1m\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, httpapi.Options{Policies: c})
	for range 3 {
		if rec := e.do("POST", "/v1/consume", `{"key":"gina","policy":"premium"}`); rec.Code != 200 {
			t.Fatalf("consume: %d %s", rec.Code, rec.Body)
		}
	}
	if rec := e.do("POST", "/v1/peek", `{"key":"gina","limit":3,"window":"1ms"}`); rec.Code != 200 {
		t.Fatalf("peek with 1ms: %d %s", rec.Code, rec.Body)
	}
	for _, body := range []string{
		`{"key":"\u0000premium\u0000gina","limit":3,"window":"1m","cost":3}`,
		`{"key":"policy:premium:gina","limit":3,"window":"1m","cost":3}`,
		`{"key":"gina","limit":3,"window":"1m","cost":3}`,
	} {
		if rec := e.do("POST", "/v1/consume", body); rec.Code != 200 {
			t.Errorf("inline %s: %d %s; want allowed: its own namespace", body, rec.Code, rec.Body)
		}
		if rec := e.do("POST", "/v1/refund", body); rec.Code != 200 {
			t.Errorf("refund %s: %d", body, rec.Code)
		}
	}
	rec := e.do("POST", "/v1/peek", `{"key":"gina","policy":"premium"}`)
	var got limitsBody
	if err := json.Unmarshal(rec.Body.Bytes(), &got); rec.Code != 429 || err != nil || got.Used != 3 {
		t.Errorf("the policy's key after inline calls and a short peek: %d %s; want 429 with used 3", rec.Code, rec.Body)
	}
}
