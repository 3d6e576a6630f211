package middleware_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/middleware"
	"github.com/tollgate/tollgate/policy"
)

// With FailureMode fail_local, the Fallback checks the requests while the
// store is down or too slow, limits there, and the answers are marked
// degraded; errors that are not the store's still go to OnError.
func TestFailLocal(t *testing.T) {
	down := badStore{fmt.Errorf("%w: connection refused", tollgate.ErrUnavailable)}
	for _, tt := range []struct {
		name    string
		store   tollgate.Store
		timeout time.Duration
	}{
		{"store down", down, 0},
		{"store hangs past the timeout", badStore{}, 20 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fb, _ := newLimiter(t)
			onError := 0
			h := middleware.New(tollgate.New(tt.store, tollgate.Options{}), middleware.Options{
				Limit:       tollgate.PerMinute(2),
				Name:        "per-ip",
				Timeout:     tt.timeout,
				FailureMode: policy.FailLocal,
				Fallback:    fb,
				OnError: func(w http.ResponseWriter, r *http.Request, err error) bool {
					onError++
					return middleware.FailClosed(w, r, err)
				},
			})(ok)
			for i, want := range []struct {
				status    int
				rateLimit string
			}{
				{200, `"per-ip";r=1;t=60`},
				{200, `"per-ip";r=0;t=60`},
				{429, `"per-ip";r=0;t=60`},
			} {
				rec := get(h, "192.0.2.1:1")
				if rec.Code != want.status || rec.Header().Get("RateLimit") != want.rateLimit ||
					rec.Header().Get(middleware.HeaderDegraded) != "local-fallback" {
					t.Errorf("request %d: %d RateLimit %q %s %q; want %d %q, local-fallback", i+1, rec.Code,
						rec.Header().Get("RateLimit"), middleware.HeaderDegraded, rec.Header().Get(middleware.HeaderDegraded), want.status, want.rateLimit)
				}
			}
			if onError != 0 {
				t.Errorf("OnError called %d times for failures the fallback answered", onError)
			}
			// The fallback counts in the middleware's namespace.
			res, err := fb.Namespace("middleware:per-ip").Peek(context.Background(), "192.0.2.1", tollgate.PerMinute(2))
			if err != nil || res.Used != 2 {
				t.Errorf("fallback: %d used, %v; want 2", res.Used, err)
			}
		})
	}

	// A fallback that fails too, and errors other than the store's, go to
	// OnError (here the default, FailClosed).
	fbDown := tollgate.New(down, tollgate.Options{})
	for _, tt := range []struct {
		name     string
		opts     middleware.Options
		status   int
		code     string
		fallback *tollgate.Limiter
	}{
		{"the fallback fails too", middleware.Options{Limit: tollgate.PerMinute(2)}, 503, "unavailable", fbDown},
		{"an invalid limit", middleware.Options{Limit: tollgate.Limit{Units: 1}}, 500, "internal", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fb := tt.fallback
			if fb == nil {
				fb, _ = newLimiter(t)
			}
			tt.opts.FailureMode, tt.opts.Fallback = policy.FailLocal, fb
			rec := get(middleware.New(tollgate.New(down, tollgate.Options{}), tt.opts)(ok), "192.0.2.1:1")
			if rec.Code != tt.status || decode(t, rec).Error.Code != tt.code || rec.Header().Get(middleware.HeaderDegraded) != "" {
				t.Errorf("%d %q %s %q; want %d %s, not degraded", rec.Code, rec.Body,
					middleware.HeaderDegraded, rec.Header().Get(middleware.HeaderDegraded), tt.status, tt.code)
			}
		})
	}
}
