package rls

import (
	"context"
	"slices"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlspb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/fakeclock"
	"github.com/tollgate/tollgate/policy"
	"github.com/tollgate/tollgate/server/observe/observetest"
	"github.com/tollgate/tollgate/store/memory"
)

const fallbackRules = `
domain: test
descriptors:
  - key: local
    rate_limit: {unit: minute, requests_per_unit: 2, failure_mode: fail_local}
  - key: open
    rate_limit: {unit: minute, requests_per_unit: 2, failure_mode: fail_open}
  - key: closed
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: stop
    rate_limit: {unit: minute, requests_per_unit: 5, failure_mode: fail_local, stop_charging_when_over: true}
`

// newFallback returns an in-process Limiter on a fake clock.
func newFallback(t *testing.T) *tollgate.Limiter {
	t.Helper()
	m := memory.New(memory.Options{})
	t.Cleanup(func() { m.Close() })
	clk := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	return tollgate.New(m, tollgate.Options{Now: clk.Now})
}

// A fail_local rule is answered from the fallback Limiter while the store is
// down, and limits there; rules of the other modes keep theirs.
func TestRuleFailLocal(t *testing.T) {
	obs := &observetest.Checks{}
	e := start(t, parseRules(t, fallbackRules), failingStore{}, Options{Fallback: newFallback(t), Observer: obs})
	e.expect(t, 0, d("local=x"), ok, "OK remaining=1 limit=2/MINUTE reset=60s")
	e.expect(t, 0, d("local=x"), ok, "OK remaining=0 limit=2/MINUTE reset=60s")
	e.expect(t, 0, d("local=x"), over, "OVER_LIMIT remaining=0 limit=2/MINUTE reset=60s")
	e.expect(t, 0, d("local=y"), ok, "OK remaining=1 limit=2/MINUTE reset=60s")
	e.expect(t, 0, d("open=x"), ok, "OK remaining=0 limit=2/MINUTE")
	_, err := e.call(t, &rlspb.RateLimitRequest{Domain: "test", Descriptors: []*rlv3.RateLimitDescriptor{d("local=z"), d("closed=x")}})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("fail_local and fail_closed rules: error %v, want Unavailable", err)
	}
	want := "test allowed, test allowed, test denied, test allowed, test fail_open, test allowed, test error" // by domain: the rules have no names
	if got := obs.Take(); got != want {
		t.Errorf("observed %q\nwant     %q", got, want)
	}

	// Without a Fallback, fail_local acts as fail_closed.
	e = start(t, parseRules(t, fallbackRules), failingStore{}, Options{})
	_, err = e.call(t, &rlspb.RateLimitRequest{Domain: "test", Descriptors: []*rlv3.RateLimitDescriptor{d("local=x")}})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("no fallback: error %v, want Unavailable", err)
	}
}

// Options.FailureMode fail_local sends the rules that fail closed to the
// fallback too; a fail_open rule keeps its own mode.
func TestServerFailLocal(t *testing.T) {
	e := start(t, parseRules(t, fallbackRules), failingStore{}, Options{FailureMode: policy.FailLocal, Fallback: newFallback(t)})
	overall, statuses := e.check(t, 0, d("closed=x"), d("open=x"), d("local=x"))
	want := []string{
		"OK remaining=1 limit=2/MINUTE reset=60s",
		"OK remaining=0 limit=2/MINUTE",
		"OK remaining=1 limit=2/MINUTE reset=60s",
	}
	if overall != ok || !slices.Equal(statuses, want) {
		t.Errorf("got %s %q, want OK %q", overall, statuses, want)
	}
}

// Hits the fallback charged to a stop_charging_when_over rule are refunded
// there when a later descriptor is over its limit.
func TestFailLocalRefundsOnFallback(t *testing.T) {
	fb := newFallback(t)
	e := start(t, parseRules(t, fallbackRules), failingStore{}, Options{Fallback: fb})
	for i, wantOverall := range []string{ok, ok, over, over} {
		if overall, statuses := e.check(t, 0, d("stop=x"), d("local=x")); overall != wantOverall {
			t.Errorf("request %d: got %s %q, want %s", i, overall, statuses, wantOverall)
		}
	}
	res, err := fb.Namespace(Namespace).Peek(context.Background(), "test|stop=x", tollgate.PerMinute(5))
	if err != nil || res.Used != 2 {
		t.Errorf("stop=x on the fallback: %d used, %v; want 2 (the over-limit requests refunded)", res.Used, err)
	}
}
