package rls

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlspb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tollgate/tollgate"
)

// hangingStore answers nothing until its call's context ends, recording
// each call's deadline and how many calls were waiting at once.
type hangingStore struct {
	mu        sync.Mutex
	deadlines []time.Time
	inFlight  int
	peak      int
}

func (s *hangingStore) Do(ctx context.Context, _ tollgate.Request) (tollgate.Decision, error) {
	dl, _ := ctx.Deadline()
	s.mu.Lock()
	s.deadlines = append(s.deadlines, dl)
	s.inFlight++
	s.peak = max(s.peak, s.inFlight)
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	s.inFlight--
	s.mu.Unlock()
	return tollgate.Decision{}, ctx.Err()
}

func (s *hangingStore) Reset(ctx context.Context, _ string) error {
	<-ctx.Done()
	return ctx.Err()
}

const openRules = `
domain: test
descriptors:
  - key: k
    rate_limit: {unit: minute, requests_per_unit: 10, failure_mode: fail_open}
`

// The descriptors of one request reach the store concurrently, under one
// deadline: with a store that never answers, a request of the most
// descriptors allowed has every call waiting at once, all with the same
// deadline, and fail_open answers OK when it passes.
func TestOneDeadlinePerRequest(t *testing.T) {
	st := &hangingStore{}
	e := start(t, parseRules(t, openRules), st, Options{Timeout: 50 * time.Millisecond})
	ds := make([]*rlv3.RateLimitDescriptor, DefaultMaxDescriptors)
	for i := range ds {
		ds[i] = d(fmt.Sprintf("k=%d", i))
	}
	resp, err := e.call(t, &rlspb.RateLimitRequest{Domain: "test", Descriptors: ds})
	if err != nil || resp.GetOverallCode() != rlspb.RateLimitResponse_OK {
		t.Fatalf("%v, %v; want OK (fail_open)", resp.GetOverallCode(), err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.deadlines) != len(ds) || st.peak != len(ds) {
		t.Errorf("%d calls, %d at once; want %d, all at once", len(st.deadlines), st.peak, len(ds))
	}
	for _, dl := range st.deadlines {
		if dl.IsZero() || !dl.Equal(st.deadlines[0]) {
			t.Fatalf("deadlines %v: want one for the whole request", st.deadlines)
		}
	}
}

// More descriptors than MaxDescriptors is InvalidArgument, and none is
// checked.
func TestMaxDescriptors(t *testing.T) {
	st := &hangingStore{}
	e := start(t, parseRules(t, openRules), st, Options{MaxDescriptors: 3})
	_, err := e.call(t, &rlspb.RateLimitRequest{Domain: "test", Descriptors: []*rlv3.RateLimitDescriptor{d("k=1"), d("k=2"), d("k=3"), d("k=4")}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("4 descriptors: %v, want InvalidArgument", err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.deadlines) != 0 {
		t.Errorf("%d store calls for a refused request", len(st.deadlines))
	}
}
