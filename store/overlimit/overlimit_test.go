package overlimit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/fakeclock"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/overlimit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the fake clock's start.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// counting counts the calls that reach the wrapped store.
type counting struct {
	tollgate.Store
	do, reset atomic.Int64
}

func (c *counting) Do(ctx context.Context, req tollgate.Request) (tollgate.Decision, error) {
	c.do.Add(1)
	return c.Store.Do(ctx, req)
}

func (c *counting) Reset(ctx context.Context, key string) error {
	c.reset.Add(1)
	return c.Store.Reset(ctx, key)
}

type hits atomic.Int64

func (h *hits) CacheHit() { (*atomic.Int64)(h).Add(1) }

type env struct {
	clock *fakeclock.Clock
	inner *counting
	cache *overlimit.Store
	lim   *tollgate.Limiter
	hits  *hits
}

// newEnv returns a Limiter over an overlimit.Store over a memory store, all
// on one fake clock. limiterClock: the Limiter passes the time (Request.Now);
// else the stores use their own clocks, set to the same fake one.
func newEnv(t *testing.T, opts overlimit.Options, limiterClock bool) *env {
	t.Helper()
	c := fakeclock.New(t0)
	mem := memory.New(memory.Options{Now: c.Now})
	t.Cleanup(func() { _ = mem.Close() })
	e := &env{clock: c, inner: &counting{Store: mem}, hits: new(hits)}
	opts.Observer = e.hits
	var limOpts tollgate.Options
	if limiterClock {
		limOpts.Now = c.Now
	} else {
		opts.Now = c.Now
	}
	e.cache = overlimit.New(e.inner, opts)
	e.lim = tollgate.New(e.cache, limOpts)
	return e
}

var (
	perTen   = tollgate.Limit{Units: 3, Window: 10 * time.Second}
	perTenSW = tollgate.Limit{Units: 3, Window: 10 * time.Second, Algorithm: tollgate.SlidingWindow}
	perTen5  = tollgate.Limit{Units: 5, Window: 10 * time.Second}
	perMin   = tollgate.Limit{Units: 5, Window: time.Minute}
)

// step is one call at an instant and what it should see.
type step struct {
	at    time.Duration
	op    string // consume, peek, refund, reset
	key   string // "" means "k"
	id    string // request id (tollgate.WithRequestID), if any
	cost  int64
	lim   tollgate.Limit
	allow bool
	retry time.Duration // RetryAfter wanted, when denied; -1: not checked
	used  int64
	store bool // whether the call reaches the store
}

func run(t *testing.T, e *env, steps []step) {
	t.Helper()
	for i, s := range steps {
		ctx := context.Background()
		if s.id != "" {
			ctx = tollgate.WithRequestID(ctx, s.id)
		}
		e.clock.Set(t0.Add(s.at))
		key := s.key
		if key == "" {
			key = "k"
		}
		before := e.inner.do.Load() + e.inner.reset.Load()
		var (
			res tollgate.Result
			err error
		)
		switch s.op {
		case "consume":
			res, err = e.lim.Consume(ctx, key, s.cost, s.lim)
		case "peek":
			res, err = e.lim.Peek(ctx, key, s.lim)
		case "refund":
			res, err = e.lim.Refund(ctx, key, s.cost, s.lim)
		case "reset":
			err = e.lim.Reset(ctx, key)
		default:
			t.Fatalf("step %d: unknown op %q", i, s.op)
		}
		if err != nil {
			t.Fatalf("step %d (%s at %s): %v", i, s.op, s.at, err)
		}
		reached := e.inner.do.Load()+e.inner.reset.Load() > before
		if reached != s.store {
			t.Errorf("step %d (%s %s cost %d at %s): reached the store %t, want %t", i, s.op, key, s.cost, s.at, reached, s.store)
		}
		if s.op == "reset" || s.op == "refund" {
			continue
		}
		if res.Allowed != s.allow || res.Used != s.used || res.Limit != s.lim.Units || res.Remaining != max(0, s.lim.Units-s.used) {
			t.Errorf("step %d (%s %s cost %d at %s): %+v, want allowed %t used %d", i, s.op, key, s.cost, s.at, res, s.allow, s.used)
		}
		if !s.allow && s.retry >= 0 && res.RetryAfter != s.retry {
			t.Errorf("step %d (%s %s cost %d at %s): RetryAfter %s, want %s", i, s.op, key, s.cost, s.at, res.RetryAfter, s.retry)
		}
	}
}

func TestCache(t *testing.T) {
	s := time.Second
	tests := []struct {
		name  string
		opts  overlimit.Options
		steps []step
	}{
		{"a denial is answered locally until RetryAfter, then the store is asked again", overlimit.Options{}, []step{
			{at: 0, op: "consume", cost: 3, lim: perTen, allow: true, used: 3, store: true},
			{at: 1 * s, op: "consume", cost: 1, lim: perTen, retry: 9 * s, used: 3, store: true},
			{at: 2 * s, op: "consume", cost: 1, lim: perTen, retry: 8 * s, used: 3},
			{at: 2 * s, op: "consume", cost: 3, lim: perTen, retry: 8 * s, used: 3}, // a larger cost: a lower bound
			{at: 2 * s, op: "peek", lim: perTen, retry: 8 * s, used: 3},
			{at: 10*s - time.Microsecond, op: "consume", cost: 1, lim: perTen, retry: time.Microsecond, used: 3},
			{at: 10 * s, op: "consume", cost: 1, lim: perTen, allow: true, used: 1, store: true},
			{at: 11 * s, op: "consume", cost: 1, lim: perTen, allow: true, used: 2, store: true},
		}},
		{"a smaller cost than the denied one goes to the store", overlimit.Options{}, []step{
			{at: 0, op: "consume", cost: 2, lim: perTen, allow: true, used: 2, store: true},
			{at: 1 * s, op: "consume", cost: 2, lim: perTen, retry: 9 * s, used: 2, store: true},
			{at: 2 * s, op: "consume", cost: 2, lim: perTen, retry: 8 * s, used: 2},
			{at: 2 * s, op: "peek", lim: perTen, allow: true, used: 2, store: true},
			{at: 3 * s, op: "consume", cost: 1, lim: perTen, allow: true, used: 3, store: true},
			{at: 4 * s, op: "consume", cost: 1, lim: perTen, retry: 6 * s, used: 3, store: true},
			{at: 5 * s, op: "consume", cost: 1, lim: perTen, retry: 5 * s, used: 3}, // the cost-1 denial replaced the cost-2 one
			{at: 5 * s, op: "peek", lim: perTen, retry: 5 * s, used: 3},
		}},
		{"a peek's denial answers consumes", overlimit.Options{}, []step{
			{at: 0, op: "consume", cost: 3, lim: perTen, allow: true, used: 3, store: true},
			{at: 1 * s, op: "peek", lim: perTen, retry: 9 * s, used: 3, store: true},
			{at: 2 * s, op: "consume", cost: 2, lim: perTen, retry: 8 * s, used: 3},
		}},
		{"refund forgets the key's denials", overlimit.Options{}, []step{
			{at: 0, op: "consume", cost: 3, lim: perTen, allow: true, used: 3, store: true},
			{at: 1 * s, op: "consume", cost: 1, lim: perTen, retry: 9 * s, used: 3, store: true},
			{at: 2 * s, op: "refund", cost: 1, lim: perTen, store: true},
			{at: 2 * s, op: "consume", cost: 1, lim: perTen, allow: true, used: 3, store: true},
			{at: 3 * s, op: "consume", cost: 1, lim: perTen, retry: 7 * s, used: 3, store: true},
			{at: 3 * s, op: "consume", cost: 1, lim: perTen, retry: 7 * s, used: 3},
		}},
		{"reset forgets the key's denials under every limit, and no other key's", overlimit.Options{}, []step{
			{at: 0, op: "consume", cost: 3, lim: perTen, allow: true, used: 3, store: true},
			{at: 0, op: "consume", cost: 3, lim: perTenSW, allow: true, used: 3, store: true},
			{at: 0, key: "other", op: "consume", cost: 3, lim: perTen, allow: true, used: 3, store: true},
			{at: 1 * s, op: "consume", cost: 1, lim: perTen, retry: 9 * s, used: 3, store: true},
			{at: 1 * s, op: "consume", cost: 1, lim: perTenSW, retry: -1, used: 3, store: true},
			{at: 1 * s, key: "other", op: "consume", cost: 1, lim: perTen, retry: 9 * s, used: 3, store: true},
			{at: 2 * s, op: "reset", store: true},
			{at: 2 * s, op: "consume", cost: 1, lim: perTen, allow: true, used: 1, store: true},
			{at: 2 * s, op: "consume", cost: 1, lim: perTenSW, allow: true, used: 1, store: true},
			{at: 2 * s, key: "other", op: "consume", cost: 1, lim: perTen, retry: 8 * s, used: 3},
		}},
		{"each limit of a key has its own entry", overlimit.Options{}, []step{
			{at: 0, op: "consume", cost: 3, lim: perTen, allow: true, used: 3, store: true},
			{at: 1 * s, op: "consume", cost: 1, lim: perTen, retry: 9 * s, used: 3, store: true},
			// The same sliding-log state (same window) under a larger limit:
			// not covered.
			{at: 1 * s, op: "consume", cost: 1, lim: perTen5, allow: true, used: 4, store: true},
			{at: 1 * s, op: "consume", cost: 2, lim: perTen5, retry: 9 * s, used: 4, store: true},
			{at: 2 * s, op: "consume", cost: 2, lim: perTen5, retry: 8 * s, used: 4},
			{at: 2 * s, op: "consume", cost: 1, lim: perTen, retry: 8 * s, used: 3},
		}},
		{"a consume with a request id goes to the store, which may know it as allowed", overlimit.Options{}, []step{
			{at: 0, op: "consume", cost: 2, lim: perTen, allow: true, used: 2, store: true},
			{at: 0, id: "r1", op: "consume", cost: 1, lim: perTen, allow: true, used: 3, store: true},
			{at: 1 * s, op: "consume", cost: 1, lim: perTen, retry: 9 * s, used: 3, store: true},
			{at: 2 * s, op: "consume", cost: 1, lim: perTen, retry: 8 * s, used: 3},
			{at: 2 * s, id: "r1", op: "consume", cost: 1, lim: perTen, allow: true, used: 3, store: true}, // a repeat
			{at: 2 * s, id: "r2", op: "consume", cost: 1, lim: perTen, retry: 8 * s, used: 3, store: true},
			{at: 3 * s, op: "consume", cost: 1, lim: perTen, retry: 7 * s, used: 3},
		}},
		{"MaxAge caps how long a denial is answered", overlimit.Options{MaxAge: 2 * s}, []step{
			{at: 0, op: "consume", cost: 3, lim: perTen, allow: true, used: 3, store: true},
			{at: 1 * s, op: "consume", cost: 1, lim: perTen, retry: 9 * s, used: 3, store: true},
			{at: 3*s - time.Microsecond, op: "consume", cost: 1, lim: perTen, retry: 7*s + time.Microsecond, used: 3},
			{at: 3 * s, op: "consume", cost: 1, lim: perTen, retry: 7 * s, used: 3, store: true},
			{at: 4 * s, op: "consume", cost: 1, lim: perTen, retry: 6 * s, used: 3},
		}},
		{"the least recently used denial is forgotten when full", overlimit.Options{Size: 2}, []step{
			{at: 0, key: "a", op: "consume", cost: 3, lim: perTen, allow: true, used: 3, store: true},
			{at: 0, key: "b", op: "consume", cost: 3, lim: perTen, allow: true, used: 3, store: true},
			{at: 0, key: "c", op: "consume", cost: 3, lim: perTen, allow: true, used: 3, store: true},
			{at: 1 * s, key: "a", op: "consume", cost: 1, lim: perTen, retry: 9 * s, used: 3, store: true},
			{at: 1 * s, key: "b", op: "consume", cost: 1, lim: perTen, retry: 9 * s, used: 3, store: true},
			{at: 2 * s, key: "a", op: "consume", cost: 1, lim: perTen, retry: 8 * s, used: 3}, // a is now the most recent
			{at: 2 * s, key: "c", op: "consume", cost: 1, lim: perTen, retry: 8 * s, used: 3, store: true},
			{at: 3 * s, key: "a", op: "consume", cost: 1, lim: perTen, retry: 7 * s, used: 3},
			{at: 3 * s, key: "c", op: "consume", cost: 1, lim: perTen, retry: 7 * s, used: 3},
			{at: 3 * s, key: "b", op: "consume", cost: 1, lim: perTen, retry: 7 * s, used: 3, store: true}, // b was pushed out
		}},
	}
	for _, tt := range tests {
		for _, limiterClock := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/limiter clock %t", tt.name, limiterClock), func(t *testing.T) {
				e := newEnv(t, tt.opts, limiterClock)
				run(t, e, tt.steps)
				wantHits := int64(0)
				for _, s := range tt.steps {
					if !s.store {
						wantHits++
					}
				}
				if got := (*atomic.Int64)(e.hits).Load(); got != wantHits {
					t.Errorf("observer saw %d hits, want %d", got, wantHits)
				}
				if size := tt.opts.Size; size > 0 && e.cache.Len() > size {
					t.Errorf("Len %d above Size %d", e.cache.Len(), size)
				}
			})
		}
	}
}

func TestEvictionKeepsSize(t *testing.T) {
	e := newEnv(t, overlimit.Options{Size: 10}, true)
	ctx := context.Background()
	one := tollgate.Limit{Units: 1, Window: time.Hour}
	for i := range 100 {
		key := fmt.Sprint("k", i)
		for range 2 {
			if _, err := e.lim.Consume(ctx, key, 1, one); err != nil {
				t.Fatal(err)
			}
		}
		if n := e.cache.Len(); n != min(i+1, 10) {
			t.Fatalf("after %d denied keys Len is %d", i+1, n)
		}
	}
	// The 10 most recent are answered locally, the others not.
	before := e.inner.do.Load()
	for i := 90; i < 100; i++ {
		if res, err := e.lim.Consume(ctx, fmt.Sprint("k", i), 1, one); err != nil || res.Allowed {
			t.Fatalf("k%d: %+v, %v", i, res, err)
		}
	}
	if n := e.inner.do.Load() - before; n != 0 {
		t.Errorf("%d of the 10 most recent denials reached the store", n)
	}
	if _, err := e.lim.Consume(ctx, "k0", 1, one); err != nil {
		t.Fatal(err)
	}
	if n := e.inner.do.Load() - before; n != 1 {
		t.Errorf("the oldest denial was answered locally")
	}
}

// hookStore calls during on each Do before answering with res and err.
type hookStore struct {
	during func()
	res    tollgate.Result
	err    error
	calls  atomic.Int64
}

func (h *hookStore) Do(context.Context, tollgate.Request) (tollgate.Decision, error) {
	h.calls.Add(1)
	if h.during != nil {
		h.during()
	}
	if h.err != nil {
		return tollgate.Decision{}, h.err
	}
	return tollgate.Decision{Allowed: h.res.Allowed, RetryAfter: h.res.RetryAfter, Results: []tollgate.Result{h.res}}, nil
}

func (h *hookStore) Reset(context.Context, string) error { return nil }

var denied = tollgate.Result{Limit: 3, Used: 3, RetryAfter: time.Hour, ResetAfter: time.Hour}

func TestDenialInFlightDuringRefundOrResetIsNotRemembered(t *testing.T) {
	ctx := context.Background()
	for _, op := range []string{"refund", "reset"} {
		t.Run(op, func(t *testing.T) {
			h := &hookStore{res: denied}
			s := overlimit.New(h, overlimit.Options{})
			h.during = func() {
				h.during = nil
				if op == "reset" {
					_ = s.Reset(ctx, "k")
				} else {
					_, _ = s.Do(ctx, tollgate.Request{Op: tollgate.OpRefund, Key: "k", Limits: []tollgate.Limit{perTen}, Cost: 1})
				}
			}
			req := tollgate.Request{Op: tollgate.OpConsume, Key: "k", Limits: []tollgate.Limit{perTen}, Cost: 1}
			if res, err := s.Do(ctx, req); err != nil || res.Results[0] != denied {
				t.Fatalf("%+v, %v", res, err)
			}
			if s.Len() != 0 {
				t.Fatalf("a denial that may predate the %s was remembered", op)
			}
			// The next denial is remembered.
			for range 2 {
				if _, err := s.Do(ctx, req); err != nil {
					t.Fatal(err)
				}
			}
			want := int64(2) // the first consume and the one after it
			if op == "refund" {
				want++
			}
			if s.Len() != 1 || h.calls.Load() != want {
				t.Errorf("Len %d after %d store calls, want 1 after %d", s.Len(), h.calls.Load(), want)
			}
		})
	}
}

func TestNotRemembered(t *testing.T) {
	ctx := context.Background()
	fail := fmt.Errorf("%w: down", tollgate.ErrUnavailable)
	for _, tt := range []struct {
		name string
		res  tollgate.Result
		err  error
	}{
		{"allowed", tollgate.Result{Allowed: true, Limit: 3, Used: 1, Remaining: 2}, nil},
		{"failed", tollgate.Result{}, fail},
		{"denied without RetryAfter", tollgate.Result{Limit: 3, Used: 3}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := &hookStore{res: tt.res, err: tt.err}
			s := overlimit.New(h, overlimit.Options{})
			req := tollgate.Request{Op: tollgate.OpConsume, Key: "k", Limits: []tollgate.Limit{perTen}, Cost: 1}
			for range 2 {
				d, err := s.Do(ctx, req)
				var res tollgate.Result
				if err == nil {
					res = d.Results[0]
				}
				if res != tt.res || !errors.Is(err, tt.err) {
					t.Fatalf("%+v, %v; want %+v, %v", res, err, tt.res, tt.err)
				}
			}
			if h.calls.Load() != 2 || s.Len() != 0 {
				t.Errorf("%d store calls, Len %d; want 2, 0", h.calls.Load(), s.Len())
			}
		})
	}
}

func TestErrorsPassThrough(t *testing.T) {
	ctx := context.Background()
	fail := fmt.Errorf("%w: down", tollgate.ErrUnavailable)
	h := &hookStore{res: denied}
	s := overlimit.New(h, overlimit.Options{})
	req := tollgate.Request{Op: tollgate.OpConsume, Key: "k", Limits: []tollgate.Limit{perTen}, Cost: 1}
	if _, err := s.Do(ctx, req); err != nil {
		t.Fatal(err)
	}
	h.res, h.err = tollgate.Result{}, fail
	refund := req
	refund.Op = tollgate.OpRefund
	if _, err := s.Do(ctx, refund); !errors.Is(err, fail) {
		t.Fatalf("refund: %v, want %v", err, fail)
	}
	// The failed refund may have applied: the denial is forgotten.
	if _, err := s.Do(ctx, req); !errors.Is(err, fail) {
		t.Fatalf("consume after a failed refund: %v, want the store's error", err)
	}
}

// TestConcurrent runs consumes, peeks, refunds and resets on a few keys from
// many goroutines (run it with -race), and checks that every denial the
// cache gives the store would have given too, at a moment during the call.
func TestConcurrent(t *testing.T) {
	mem := memory.New(memory.Options{})
	defer mem.Close()
	s := overlimit.New(mem, overlimit.Options{Size: 3})
	lim := tollgate.New(s, tollgate.Options{})
	ctx := context.Background()
	limit := tollgate.Limit{Units: 5, Window: time.Hour}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				key := fmt.Sprint("k", (g+i)%5)
				var err error
				switch i % 10 {
				case 7:
					_, err = lim.Refund(ctx, key, 1, limit)
				case 8:
					_, err = lim.Peek(ctx, key, limit)
				case 9:
					if g == 0 {
						err = lim.Reset(ctx, key)
					}
				default:
					var res tollgate.Result
					res, err = lim.Consume(ctx, key, 1+int64(i%2), limit)
					if err == nil && !res.Allowed && (res.Used+1+int64(i%2) <= res.Limit || res.RetryAfter <= 0) {
						err = fmt.Errorf("inconsistent denial %+v", res)
					}
				}
				if err != nil {
					t.Error(err)
					return
				}
				if n := s.Len(); n > 3 {
					t.Errorf("Len %d above Size 3", n)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkHit(b *testing.B) {
	h := &hookStore{res: denied}
	s := overlimit.New(h, overlimit.Options{})
	req := tollgate.Request{Op: tollgate.OpConsume, Key: "customer-42", Limits: []tollgate.Limit{perTen}, Cost: 1}
	ctx := context.Background()
	if _, err := s.Do(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res, _ := s.Do(ctx, req); res.Allowed {
				b.Fatal("allowed")
			}
		}
	})
	if h.calls.Load() != 1 {
		b.Fatalf("%d store calls", h.calls.Load())
	}
}
