package middleware_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/fakeclock"
	"github.com/tollgate/tollgate/middleware"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/store/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// newLimiter returns a Limiter over a memory store on a fake clock.
func newLimiter(t *testing.T) (*tollgate.Limiter, *fakeclock.Clock) {
	t.Helper()
	c := fakeclock.New(t0)
	st := memory.New(memory.Options{Now: c.Now})
	t.Cleanup(func() { _ = st.Close() })
	return tollgate.New(st, tollgate.Options{Now: c.Now}), c
}

// ok is the next handler: it answers 200 "ok".
var ok = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	_, _ = w.Write([]byte("ok"))
})

// get sends a GET from remote with header lines "Name", "value", ... .
func get(h http.Handler, remote string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = remote
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

type errorBody struct {
	Error struct {
		Code         string `json:"code"`
		Message      string `json:"message"`
		RetryAfterMS int64  `json:"retry_after_ms"`
	} `json:"error"`
}

func decode(t *testing.T, rec *httptest.ResponseRecorder) errorBody {
	t.Helper()
	var b errorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	if rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", rec.Header().Get("Content-Type"))
	}
	return b
}

func TestAllowThenDeny(t *testing.T) {
	lim, c := newLimiter(t)
	h := middleware.New(lim, middleware.Options{Limit: tollgate.PerMinute(2), Name: "per-ip"})(ok)
	const client = "203.0.113.5:4711"
	for i, want := range []string{`"per-ip";r=1;t=60`, `"per-ip";r=0;t=60`} {
		rec := get(h, client)
		if rec.Code != 200 || rec.Body.String() != "ok" {
			t.Fatalf("request %d: %d %q", i+1, rec.Code, rec.Body)
		}
		if got := rec.Header().Get("RateLimit"); got != want {
			t.Errorf("request %d: RateLimit %q, want %q", i+1, got, want)
		}
		if got := rec.Header().Get("RateLimit-Policy"); got != `"per-ip";q=2;w=60` {
			t.Errorf("request %d: RateLimit-Policy %q", i+1, got)
		}
	}
	c.Advance(1500 * time.Millisecond)
	rec := get(h, client)
	if rec.Code != 429 {
		t.Fatalf("third request: %d %q", rec.Code, rec.Body)
	}
	b := decode(t, rec)
	if b.Error.Code != "rate_limited" || b.Error.RetryAfterMS != 58500 || b.Error.Message != "rate limit exceeded; retry in 59s" {
		t.Errorf("body %+v", b)
	}
	if rec.Header().Get("Retry-After") != "59" || rec.Header().Get("RateLimit") != `"per-ip";r=0;t=59` {
		t.Errorf("headers %v", rec.Header())
	}
	// Another client has its own count.
	if rec := get(h, "203.0.113.6:4711"); rec.Code != 200 {
		t.Errorf("another client: %d", rec.Code)
	}
	// IPv4-mapped IPv6 is the same client.
	if rec := get(h, "[::ffff:203.0.113.5]:1"); rec.Code != 429 {
		t.Errorf("the same client over IPv4-mapped IPv6: %d", rec.Code)
	}
	c.Advance(time.Minute)
	if rec := get(h, client); rec.Code != 200 {
		t.Errorf("after the window: %d", rec.Code)
	}
}

func TestForwardedForIsIgnoredByDefault(t *testing.T) {
	lim, _ := newLimiter(t)
	h := middleware.New(lim, middleware.Options{Limit: tollgate.PerMinute(1)})(ok)
	if rec := get(h, "198.51.100.1:1", "X-Forwarded-For", "192.0.2.1"); rec.Code != 200 {
		t.Fatal(rec.Code)
	}
	if rec := get(h, "198.51.100.1:1", "X-Forwarded-For", "192.0.2.2"); rec.Code != 429 {
		t.Errorf("a forged X-Forwarded-For escaped the limit: %d", rec.Code)
	}
}

func TestClientIP(t *testing.T) {
	for _, tt := range []struct{ remote, want string }{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[2001:DB8:0:0::1]:443", "2001:db8::1"},
		{"[fe80::1%eth0]:443", "fe80::1"},
		{"[::ffff:192.0.2.1]:1", "192.0.2.1"},
		{"192.0.2.1", "192.0.2.1"},
		{"", ""},
		{"@", ""},
		{"example.com:80", ""},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		got, err := middleware.ClientIP(r)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("ClientIP(%q) = %q, %v; want %q", tt.remote, got, err, tt.want)
		}
	}
}

func TestClientIPBehind(t *testing.T) {
	key := middleware.ClientIPBehind(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48"))
	for _, tt := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"untrusted peer: its header is ignored", "192.0.2.9:1", []string{"198.51.100.1"}, "192.0.2.9"},
		{"one proxy", "10.0.0.1:1", []string{"198.51.100.1"}, "198.51.100.1"},
		{"forged entries left of the client are ignored", "10.0.0.1:1", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1"},
		{"two proxies", "10.0.0.1:1", []string{"198.51.100.1, 10.1.2.3"}, "198.51.100.1"},
		{"several header lines", "10.0.0.1:1", []string{"6.6.6.6", "198.51.100.1,10.1.2.3"}, "198.51.100.1"},
		{"ports and brackets", "[2001:db8:ffff::2]:1", []string{"[2001:db8::7]:5555, 10.0.0.2:80"}, "2001:db8::7"},
		{"all trusted: the leftmost", "10.0.0.1:1", []string{"10.9.9.9, 10.1.1.1"}, "10.9.9.9"},
		{"trusted peer without the header", "10.0.0.1:1", nil, "10.0.0.1"},
		{"empty entries are skipped", "10.0.0.1:1", []string{"198.51.100.1, ,"}, "198.51.100.1"},
		{"garbage where the client should be", "10.0.0.1:1", []string{"unknown"}, ""},
		{"garbage left of the client is not read", "10.0.0.1:1", []string{"unknown, 198.51.100.1"}, "198.51.100.1"},
		{"bad peer", "nope", nil, ""},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		got, err := key(r)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("%s: %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestKeyCostAndExemptions(t *testing.T) {
	lim, _ := newLimiter(t)
	h := middleware.New(lim, middleware.Options{
		Limit: tollgate.PerMinute(10),
		Key: func(r *http.Request) (string, error) {
			switch k := r.Header.Get("X-Api-Key"); k {
			case "internal":
				return "", nil // exempt
			case "":
				return "", errors.New("no API key")
			default:
				return "key:" + k, nil
			}
		},
		Cost: func(r *http.Request) int64 {
			n, _ := strconv.ParseInt(r.Header.Get("X-Items"), 10, 64)
			return n
		},
	})(ok)
	for i, tt := range []struct {
		key, items string
		status     int
		code       string
		remaining  string // RateLimit
	}{
		{"a", "4", 200, "", `"default";r=6;t=60`},
		{"a", "6", 200, "", `"default";r=0;t=60`},
		{"a", "1", 429, "rate_limited", `"default";r=0;t=60`},
		{"b", "10", 200, "", `"default";r=0;t=60`},
		{"b", "11", 400, "cost_exceeds_limit", ""},
		{"b", "0", 400, "invalid_cost", ""},
		{"", "1", 400, "invalid_key", ""},
		{"internal", "1000", 200, "", ""},
	} {
		rec := get(h, "192.0.2.1:1", "X-Api-Key", tt.key, "X-Items", tt.items)
		if rec.Code != tt.status {
			t.Fatalf("step %d: %d %q, want %d", i, rec.Code, rec.Body, tt.status)
		}
		if tt.code != "" {
			if got := decode(t, rec).Error.Code; got != tt.code {
				t.Errorf("step %d: code %q, want %q", i, got, tt.code)
			}
		}
		if got := rec.Header().Get("RateLimit"); got != tt.remaining {
			t.Errorf("step %d: RateLimit %q, want %q", i, got, tt.remaining)
		}
	}
}

// badStore fails every call with err, or hangs until its context ends when
// err is nil.
type badStore struct{ err error }

func (s badStore) Do(ctx context.Context, _ tollgate.Request) (tollgate.Decision, error) {
	if s.err != nil {
		return tollgate.Decision{}, s.err
	}
	<-ctx.Done()
	return tollgate.Decision{}, ctx.Err()
}

func (s badStore) Reset(context.Context, string) error { return s.err }

func TestStoreFailures(t *testing.T) {
	down := badStore{fmt.Errorf("%w: connection refused", tollgate.ErrUnavailable)}
	for _, tt := range []struct {
		name     string
		store    tollgate.Store
		opts     middleware.Options
		status   int
		code     string
		degraded string
	}{
		{"fail closed by default", down, middleware.Options{}, 503, "unavailable", ""},
		{"fail open", down, middleware.Options{OnError: middleware.FailOpen}, 200, "", "store-unavailable"},
		{"FailureMode fail_open", down, middleware.Options{FailureMode: policy.FailOpen}, 200, "", "store-unavailable"},
		{"fail_local without a fallback fails closed", down, middleware.Options{FailureMode: policy.FailLocal}, 503, "unavailable", ""},
		{"OnError wins over FailureMode", down, middleware.Options{FailureMode: policy.FailOpen, OnError: middleware.FailClosed}, 503, "unavailable", ""},
		{"a hanging store times out", badStore{}, middleware.Options{Timeout: 20 * time.Millisecond}, 503, "unavailable", ""},
		{"a hanging store fails open", badStore{}, middleware.Options{Timeout: 20 * time.Millisecond, OnError: middleware.FailOpen}, 200, "", "store-unavailable"},
		{"an invalid limit is internal", down, middleware.Options{Limit: tollgate.Limit{Units: 1}}, 500, "internal", ""},
		{"fail open refuses an invalid limit", down, middleware.Options{Limit: tollgate.Limit{Units: 1}, OnError: middleware.FailOpen}, 500, "internal", ""},
		{"custom", down, middleware.Options{OnError: func(w http.ResponseWriter, _ *http.Request, err error) bool {
			if !errors.Is(err, tollgate.ErrUnavailable) {
				t.Errorf("OnError got %v", err)
			}
			w.WriteHeader(http.StatusTeapot)
			return false
		}}, 418, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Limit.IsZero() {
				tt.opts.Limit = tollgate.PerMinute(5)
			}
			h := middleware.New(tollgate.New(tt.store, tollgate.Options{}), tt.opts)(ok)
			start := time.Now()
			rec := get(h, "192.0.2.1:1")
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s", d)
			}
			if rec.Code != tt.status {
				t.Fatalf("%d %q, want %d", rec.Code, rec.Body, tt.status)
			}
			if tt.code != "" {
				if got := decode(t, rec).Error.Code; got != tt.code {
					t.Errorf("code %q, want %q", got, tt.code)
				}
			}
			if got := rec.Header().Get(middleware.HeaderDegraded); got != tt.degraded {
				t.Errorf("%s %q, want %q", middleware.HeaderDegraded, got, tt.degraded)
			}
			if rec.Header().Get("RateLimit") != "" {
				t.Error("RateLimit without a result")
			}
		})
	}
}

// The middleware is safe for concurrent use and never lets more through
// than the limit.
func TestConcurrent(t *testing.T) {
	lim, _ := newLimiter(t)
	h := middleware.New(lim, middleware.Options{Limit: tollgate.PerHour(50)})(ok)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		allowed int
	)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if get(h, "192.0.2.1:1").Code == 200 {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if allowed != 50 {
		t.Errorf("%d allowed, want 50", allowed)
	}
}

// Several limits: a request passes only if it fits all, a denied one is
// charged to none, and the headers list every limit.
func TestLimits(t *testing.T) {
	lim, clk := newLimiter(t)
	limits := []tollgate.Limit{{Units: 2, Window: time.Second, Algorithm: tollgate.GCRA}, tollgate.PerHour(3)}
	h := middleware.New(lim, middleware.Options{Name: "api", Limits: limits})(ok)
	for i, want := range []int{200, 200, 429} {
		if rec := get(h, "192.0.2.1:1"); rec.Code != want {
			t.Fatalf("request %d: %d, want %d", i, rec.Code, want)
		}
	}
	clk.Set(t0.Add(time.Minute)) // the burst drained; the hour holds 2
	rec := get(h, "192.0.2.1:1")
	if rec.Code != 200 {
		t.Fatalf("after the burst drained: %d", rec.Code)
	}
	if got, want := rec.Header().Get("RateLimit-Policy"), `"api/1s";q=2;w=1, "api/1h";q=3;w=3600`; got != want {
		t.Errorf("RateLimit-Policy %s, want %s", got, want)
	}
	if got := rec.Header().Get("RateLimit"); !strings.HasPrefix(got, `"api/1h";r=0;`) {
		t.Errorf("RateLimit %s, want the hour's (0 remaining)", got)
	}
	rec = get(h, "192.0.2.1:1")
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("the hour is full: %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	// The denied requests were charged to neither limit.
	ns := lim.Namespace("middleware:api")
	if r, _ := ns.Peek(context.Background(), "192.0.2.1", limits[1]); r.Used != 3 {
		t.Errorf("hour used %d, want 3", r.Used)
	}
}
