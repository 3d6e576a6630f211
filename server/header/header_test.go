package header_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/server/header"
)

func TestSet(t *testing.T) {
	hour := tollgate.PerHour(100)
	for _, tt := range []struct {
		name       string
		policy     string
		lim        tollgate.Limit
		res        tollgate.Result
		denied     bool
		wantPolicy string
		wantLimit  string
		wantRetry  string
	}{
		{"allowed", "api-hourly", hour, tollgate.Result{Allowed: true, Remaining: 97, ResetAfter: time.Hour},
			false, `"api-hourly";q=100;w=3600`, `"api-hourly";r=97;t=3600`, ""},
		{"nothing in use: a full window", "default", hour, tollgate.Result{Allowed: true, Remaining: 100},
			false, `"default";q=100;w=3600`, `"default";r=100;t=3600`, ""},
		{"denied: t is Retry-After, rounded up", "p", hour, tollgate.Result{RetryAfter: 1500 * time.Millisecond, ResetAfter: time.Hour},
			true, `"p";q=100;w=3600`, `"p";r=0;t=2`, "2"},
		{"denied under a shadow policy is not a 429", "p", hour, tollgate.Result{RetryAfter: time.Second, ResetAfter: 90 * time.Second},
			false, `"p";q=100;w=3600`, `"p";r=0;t=90`, ""},
		{"sub-second window has no w", "fast", tollgate.Limit{Units: 5, Window: 250 * time.Millisecond},
			tollgate.Result{Allowed: true, Remaining: 4, ResetAfter: 50 * time.Millisecond},
			false, `"fast";q=5`, `"fast";r=4;t=1`, ""},
		{"quotes and backslashes are escaped", `q"uo\te`, hour, tollgate.Result{Allowed: true, Remaining: 1, ResetAfter: time.Second},
			false, `"q\"uo\\te";q=100;w=3600`, `"q\"uo\\te";r=1;t=1`, ""},
		{"integers are capped", "huge", tollgate.Limit{Units: tollgate.MaxUnits, Window: 720 * time.Hour},
			tollgate.Result{Allowed: true, Remaining: tollgate.MaxUnits, ResetAfter: time.Second},
			false, `"huge";q=999999999999999;w=2592000`, `"huge";r=999999999999999;t=1`, ""},
		{"a name outside printable ASCII: only Retry-After", "café", hour, tollgate.Result{RetryAfter: time.Second},
			true, "", "", "1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			header.Set(h, tt.policy, tt.lim, tt.res, tt.denied)
			if got := h.Get(header.RateLimitPolicy); got != tt.wantPolicy {
				t.Errorf("RateLimit-Policy %q, want %q", got, tt.wantPolicy)
			}
			if got := h.Get(header.RateLimit); got != tt.wantLimit {
				t.Errorf("RateLimit %q, want %q", got, tt.wantLimit)
			}
			if got := h.Get(header.RetryAfter); got != tt.wantRetry {
				t.Errorf("Retry-After %q, want %q", got, tt.wantRetry)
			}
		})
	}
}

func TestSetPolicy(t *testing.T) {
	h := http.Header{}
	header.SetPolicy(h, "open", tollgate.PerMinute(10))
	if got := h.Get(header.RateLimitPolicy); got != `"open";q=10;w=60` || len(h) != 1 {
		t.Errorf("header %v", h)
	}
	h = http.Header{}
	header.SetPolicy(h, "\x00", tollgate.PerMinute(10))
	if len(h) != 0 {
		t.Errorf("header %v for an invalid name", h)
	}
}

func TestSetAll(t *testing.T) {
	limits := []tollgate.Limit{
		{Units: 10, Window: time.Second, Algorithm: tollgate.GCRA},
		{Units: 1000, Window: time.Hour},
		{Units: 50, Window: time.Hour, Algorithm: tollgate.SlidingWindow},
		{Units: 5, Window: 90 * time.Minute},
	}
	allowed := tollgate.Decision{Allowed: true, Results: []tollgate.Result{
		{Allowed: true, Limit: 10, Used: 2, Remaining: 8, ResetAfter: 200 * time.Millisecond},
		{Allowed: true, Limit: 1000, Used: 2, Remaining: 998, ResetAfter: time.Hour},
		{Allowed: true, Limit: 50, Used: 49, Remaining: 1, ResetAfter: 2 * time.Hour},
		{Allowed: true, Limit: 5, Used: 2, Remaining: 3, ResetAfter: 90 * time.Minute},
	}}
	h := http.Header{}
	header.SetAll(h, "api", limits, allowed, false)
	wantPolicy := `"api/1s";q=10;w=1, "api/1h/sliding_log";q=1000;w=3600, "api/1h/sliding_window";q=50;w=3600, "api/1h30m";q=5;w=5400`
	if got := h.Get(header.RateLimitPolicy); got != wantPolicy {
		t.Errorf("RateLimit-Policy = %s\nwant %s", got, wantPolicy)
	}
	// The tightest: the fewest remaining.
	if got, want := h.Get(header.RateLimit), `"api/1h/sliding_window";r=1;t=7200`; got != want {
		t.Errorf("RateLimit = %s, want %s", got, want)
	}
	if h.Get(header.RetryAfter) != "" {
		t.Error("Retry-After on an allowed answer")
	}

	denied := tollgate.Decision{RetryAfter: 1500 * time.Millisecond, Results: []tollgate.Result{
		{Allowed: false, Limit: 10, Used: 10, RetryAfter: 100 * time.Millisecond, ResetAfter: time.Second},
		{Allowed: true, Limit: 1000, Used: 10, Remaining: 990, ResetAfter: time.Hour},
		{Allowed: false, Limit: 50, Used: 50, RetryAfter: 1500 * time.Millisecond, ResetAfter: 2 * time.Hour},
		{Allowed: true, Limit: 5, Used: 2, Remaining: 3, ResetAfter: time.Hour},
	}}
	h = http.Header{}
	header.SetAll(h, "api", limits, denied, true)
	if got, want := h.Get(header.RateLimit), `"api/1h/sliding_window";r=0;t=2`; got != want {
		t.Errorf("denied RateLimit = %s, want %s (the denying limit with the latest retry)", got, want)
	}
	if got := h.Get(header.RetryAfter); got != "2" {
		t.Errorf("Retry-After = %q, want 2", got)
	}
	// One limit: the plain fields, named as the policy.
	h = http.Header{}
	header.SetAll(h, "api", limits[:1], tollgate.Decision{Allowed: true, Results: allowed.Results[:1]}, false)
	if got, want := h.Get(header.RateLimitPolicy), `"api";q=10;w=1`; got != want {
		t.Errorf("one limit: RateLimit-Policy = %s, want %s", got, want)
	}
}

func TestCeil(t *testing.T) {
	for _, c := range []struct {
		d, unit time.Duration
		want    int64
	}{
		{-time.Second, time.Second, 0},
		{0, time.Second, 0},
		{1, time.Second, 1},
		{time.Second, time.Second, 1},
		{1500 * time.Millisecond, time.Second, 2},
		{1500 * time.Microsecond, time.Millisecond, 2},
		{time.Hour, time.Millisecond, 3_600_000},
	} {
		if got := header.Ceil(c.d, c.unit); got != c.want {
			t.Errorf("Ceil(%v, %v) = %d, want %d", c.d, c.unit, got, c.want)
		}
	}
}
