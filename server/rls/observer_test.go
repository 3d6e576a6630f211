package rls

import (
	"context"
	"testing"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlspb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/server/observe/observetest"
	"github.com/tollgate/tollgate/store/memory"
)

func TestObserver(t *testing.T) {
	m := memory.New(memory.Options{})
	defer m.Close()
	obs := &observetest.Checks{}
	s := New(tollgate.New(m, tollgate.Options{}), parseRules(t, rules), Options{Observer: obs})
	for i, step := range []struct {
		ds   []*rlv3.RateLimitDescriptor
		want string
	}{
		// A rule without a name is reported under its domain.
		{[]*rlv3.RateLimitDescriptor{d("user=alice")}, "test allowed"},
		{[]*rlv3.RateLimitDescriptor{d("user=alice"), d("user=vip")}, "test allowed, vip allowed"},
		{[]*rlv3.RateLimitDescriptor{d("user=alice")}, "test denied"},
		{[]*rlv3.RateLimitDescriptor{d("shadow=x")}, "test allowed"},
		{[]*rlv3.RateLimitDescriptor{d("shadow=x")}, "test shadow_denied"},
		{[]*rlv3.RateLimitDescriptor{d("blocked=x")}, "test denied"},
		{[]*rlv3.RateLimitDescriptor{withHits(d("user=vip"), 0)}, "vip allowed"},
		{[]*rlv3.RateLimitDescriptor{withHits(d("user=vip"), 6)}, "vip denied"},
		// Unmatched, unlimited and replaced descriptors are not checks.
		{[]*rlv3.RateLimitDescriptor{d("nope=x"), d("free=x")}, ""},
		{[]*rlv3.RateLimitDescriptor{d("tenant=a"), d("tenant-override=a")}, "test allowed"},
	} {
		if _, err := s.ShouldRateLimit(context.Background(), &rlspb.RateLimitRequest{Domain: "test", Descriptors: step.ds}); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := obs.Take(); got != step.want {
			t.Errorf("step %d: reported %q, want %q", i, got, step.want)
		}
	}
}

func TestObserverFailures(t *testing.T) {
	const rules = `
domain: test
descriptors:
  - key: open
    rate_limit: {unit: minute, requests_per_unit: 2, failure_mode: fail_open, name: o}
  - key: closed
    rate_limit: {unit: minute, requests_per_unit: 2, name: c}
`
	obs := &observetest.Checks{}
	s := New(tollgate.New(failingStore{}, tollgate.Options{}), parseRules(t, rules), Options{Observer: obs})
	req := &rlspb.RateLimitRequest{Domain: "test", Descriptors: []*rlv3.RateLimitDescriptor{d("open=x"), d("closed=x")}}
	if _, err := s.ShouldRateLimit(context.Background(), req); err == nil {
		t.Fatal("no error")
	}
	if got, want := obs.Take(), "o fail_open, c error"; got != want {
		t.Errorf("reported %q, want %q", got, want)
	}

	m := memory.New(memory.Options{})
	defer m.Close()
	s = New(tollgate.New(m, tollgate.Options{MaxKeyLen: 3}), parseRules(t, rules), Options{Observer: obs})
	if _, err := s.ShouldRateLimit(context.Background(), req); err == nil {
		t.Fatal("no error for a key too long")
	}
	// Both were checked (concurrently), so both are reported, in request
	// order.
	if got, want := obs.Take(), "o error, c error"; got != want {
		t.Errorf("unexpected error: reported %q, want %q", got, want)
	}
}
