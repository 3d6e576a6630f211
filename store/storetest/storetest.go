// Package storetest is the contract every tollgate.Store must meet: step
// tables at fixed instants for each algorithm, input errors, key and
// namespace isolation, a property test against a small reference model, one
// of the bounded sliding log against the exact log, several limits in one
// call, state that expires on the store's own clock, and a concurrency test
// in which several Limiters on separate stores share one key.
//
// A store package runs it from its tests:
//
//	storetest.Run(t, func(t *testing.T) func() tollgate.Store { … }, storetest.Options{})
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/fakeclock"
)

// Backend opens a fresh backend for one test and returns a function that
// opens stores on it. Every store it opens must see the same state (for
// Redis: a new client on the same server each time) and is closed by the
// backend's own t.Cleanup.
type Backend func(t *testing.T) (open func() tollgate.Store)

// t0 is aligned to the hour, so sliding-window buckets of a second, a
// minute or an hour start at it.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// Options describes the store under test where stores may differ.
type Options struct {
	// GeneratesIDs: the store gives each consume without a request id one
	// of its own (store/redis does, for safe retries). Every allowed
	// consume then also drops the ids older than the dedupe window, which
	// shows only when the clock goes back.
	GeneratesIDs bool
	// Inspect, if set, lists the state that store holds for the keys of
	// the Limiters on it (for Redis: every key under its prefix) with the
	// time left to live, negative for none. StateExpires needs it.
	Inspect func(t testing.TB, store tollgate.Store) map[string]time.Duration
}

// Run runs the whole contract.
func Run(t *testing.T, backend Backend, opts Options) {
	t.Run("Steps", func(t *testing.T) { testSteps(t, backend) })
	t.Run("InvalidInput", func(t *testing.T) { testInvalidInput(t, backend) })
	t.Run("Isolation", func(t *testing.T) { testIsolation(t, backend) })
	t.Run("Model", func(t *testing.T) { testModel(t, backend, opts) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, backend) })
	t.Run("MultiLimits", func(t *testing.T) { testMultiLimits(t, backend) })
	t.Run("Namespaces", func(t *testing.T) { testNamespaces(t, backend) })
	t.Run("BoundedLog", func(t *testing.T) { testBoundedLog(t, backend) })
	t.Run("StateExpires", func(t *testing.T) { testStateExpires(t, backend, opts) })
}

// uniqueKey gives each test its own keys on a shared server, so no test
// needs to flush anything.
func uniqueKey(t testing.TB, name string) string {
	return fmt.Sprintf("%s/%x/%s", t.Name(), rand.Uint64(), name)
}

type step struct {
	at    time.Duration // since t0
	op    tollgate.Op
	cost  int64
	limit tollgate.Limit // zero: the case's limit
	id    string         // request id
	want  tollgate.Result
}

// withID gives a consume step a request id.
func withID(id string, s step) step { s.id = id; return s }

func consume(at time.Duration, cost int64, want tollgate.Result) step {
	return step{at: at, op: tollgate.OpConsume, cost: cost, want: want}
}
func peek(at time.Duration, want tollgate.Result) step {
	return step{at: at, op: tollgate.OpPeek, cost: 1, want: want}
}
func refund(at time.Duration, cost int64, want tollgate.Result) step {
	return step{at: at, op: tollgate.OpRefund, cost: cost, want: want}
}

// ok and deny build expected Results; limit is filled in by run.
func ok(used, remaining int64, reset time.Duration) tollgate.Result {
	return tollgate.Result{Allowed: true, Used: used, Remaining: remaining, ResetAfter: reset}
}
func deny(used, remaining int64, retry, reset time.Duration) tollgate.Result {
	return tollgate.Result{Used: used, Remaining: remaining, RetryAfter: retry, ResetAfter: reset}
}

const (
	us     = time.Microsecond
	ms     = time.Millisecond
	sec    = time.Second
	minute = time.Minute
)

var stepCases = []struct {
	name  string
	limit tollgate.Limit
	steps []step
}{
	{"SlidingLog/WeightedCost", tollgate.Limit{Units: 10, Window: minute}, []step{
		consume(0, 3, ok(3, 7, minute)),
		consume(10*sec, 5, ok(8, 2, minute)),
		// Denied: the oldest entry (3 units at t0) must leave for 3 to fit.
		consume(20*sec, 3, deny(8, 2, 40*sec, 50*sec)),
		consume(20*sec, 2, ok(10, 0, minute)),
		peek(minute-us, deny(10, 0, us, 20*sec+us)),
		// At exactly t0+window the first entry no longer counts.
		peek(minute, ok(7, 3, 20*sec)),
		// Refund newest first: all of the 2 at 20s, then 2 of the 5 at 10s.
		refund(minute, 4, ok(3, 7, 10*sec)),
		peek(70*sec, ok(0, 10, 0)),
		consume(70*sec, 10, ok(10, 0, minute)),
		refund(70*sec, 100, ok(0, 10, 0)),
	}},
	{"SlidingLog/SameInstant", tollgate.Limit{Units: 5, Window: sec}, []step{
		consume(0, 1, ok(1, 4, sec)),
		consume(0, 1, ok(2, 3, sec)),
		consume(0, 1, ok(3, 2, sec)),
		consume(0, 2, ok(5, 0, sec)),
		consume(0, 1, deny(5, 0, sec, sec)),
		refund(0, 1, ok(4, 1, sec)),
		consume(0, 1, ok(5, 0, sec)),
	}},
	{"SlidingLog/LoweredLimit", tollgate.Limit{Units: 10, Window: minute}, []step{
		consume(0, 4, ok(4, 6, minute)),
		consume(sec, 6, ok(10, 0, minute)),
		// Usage above the new limit: 10 used, 5 allowed; cost 1 fits once
		// the 4 and the 6 have left.
		{at: 2 * sec, op: tollgate.OpPeek, cost: 1, limit: tollgate.Limit{Units: 5, Window: minute},
			want: tollgate.Result{Limit: 5, Used: 10, Remaining: 0, RetryAfter: 59 * sec, ResetAfter: 59 * sec}},
	}},
	{"SlidingWindow", tollgate.Limit{Units: 10, Window: minute, Algorithm: tollgate.SlidingWindow}, []step{
		consume(0, 4, ok(4, 6, 2*minute)),
		consume(30*sec, 6, ok(10, 0, 90*sec)),
		// Fits in the next bucket once the previous 10 weigh 9: 6 s into it.
		consume(30*sec, 1, deny(10, 0, 36*sec, 90*sec)),
		consume(66*sec, 1, ok(10, 0, 114*sec)),
		// Half-way through: ceil(10 × 0.5) = 5 of the previous, 1 current.
		peek(90*sec, ok(6, 4, 90*sec)),
		// Refund takes the current bucket's 1, then 1 of the previous.
		refund(90*sec, 2, ok(5, 5, 30*sec)),
		peek(2*minute, ok(0, 10, 0)),
		consume(3*minute, 10, ok(10, 0, 2*minute)),
		// Later in the same bucket the previous has no weight yet to lose.
		consume(3*minute+sec, 2, deny(10, 0, 71*sec, 119*sec)),
	}},
	{"SlidingWindow/PreviousWeight", tollgate.Limit{Units: 10, Window: sec, Algorithm: tollgate.SlidingWindow}, []step{
		consume(900*ms, 8, ok(8, 2, 1100*ms)),
		// Next bucket, 100 ms in: ceil(8 × 0.9) = 8 of the previous; 3 more
		// fit once it weighs 7, 125 ms in.
		consume(1100*ms, 3, deny(8, 2, 25*ms, 900*ms)),
		consume(1125*ms, 3, ok(10, 0, 1875*ms)),
		peek(1500*ms, ok(7, 3, 1500*ms)),
	}},
	{"GCRA", tollgate.Limit{Units: 10, Window: 10 * sec, Algorithm: tollgate.GCRA}, []step{
		consume(0, 10, ok(10, 0, 10*sec)),
		consume(0, 1, deny(10, 0, sec, 10*sec)),
		// Drains 1 unit per second: 7.5 left, counted as 8.
		peek(2500*ms, ok(8, 2, 7500*ms)),
		consume(2500*ms, 3, deny(8, 2, 500*ms, 7500*ms)),
		consume(3*sec, 3, ok(10, 0, 10*sec)),
		refund(3*sec, 4, ok(6, 4, 6*sec)),
		refund(3*sec, 40, ok(0, 10, 0)),
		peek(20*sec, ok(0, 10, 0)),
	}},
	{"Dedupe/SlidingLog", tollgate.Limit{Units: 10, Window: minute}, []step{
		withID("a", consume(0, 3, ok(3, 7, minute))),
		// A repeat within the dedupe window (10 s) counts nothing.
		withID("a", consume(sec, 3, ok(3, 7, 59*sec))),
		// Another cost is another request.
		withID("a", consume(sec, 2, ok(5, 5, minute))),
		// Past the dedupe window the id is new again.
		withID("a", consume(11*sec, 3, ok(8, 2, minute))),
		withID("a", consume(12*sec, 3, ok(8, 2, 59*sec))),
		// A refund ends the deduplication of the key's earlier requests.
		refund(12*sec, 1, ok(7, 3, 59*sec)),
		withID("a", consume(13*sec, 3, ok(10, 0, minute))),
		// A repeat is allowed even when the limit is full.
		withID("a", consume(13*sec, 3, ok(10, 0, minute))),
		withID("b", consume(13*sec, 1, deny(10, 0, 47*sec, minute))),
	}},
	{"Dedupe/SlidingWindow", tollgate.Limit{Units: 10, Window: minute, Algorithm: tollgate.SlidingWindow}, []step{
		withID("x", consume(0, 4, ok(4, 6, 2*minute))),
		withID("x", consume(5*sec, 4, ok(4, 6, 115*sec))),
		withID("y", consume(5*sec, 4, ok(8, 2, 115*sec))),
		refund(5*sec, 1, ok(7, 3, 115*sec)),
		withID("x", consume(6*sec, 3, ok(10, 0, 114*sec))),
	}},
	{"Dedupe/GCRA", tollgate.Limit{Units: 10, Window: 10 * sec, Algorithm: tollgate.GCRA}, []step{
		withID("x", consume(0, 4, ok(4, 6, 4*sec))),
		withID("x", consume(500*ms, 4, ok(4, 6, 3500*ms))),
		refund(500*ms, 1, ok(3, 7, 2500*ms)),
		withID("x", consume(500*ms, 4, ok(7, 3, 6500*ms))),
	}},
	{"GCRA/Smooth", tollgate.Limit{Units: 4, Window: sec, Algorithm: tollgate.GCRA}, []step{
		consume(0, 4, ok(4, 0, sec)),
		// One unit drains every 250 ms.
		consume(125*ms, 1, deny(4, 0, 125*ms, 875*ms)),
		consume(250*ms, 1, ok(4, 0, sec)),
		consume(250*ms, 1, deny(4, 0, 250*ms, sec)),
		consume(500*ms, 1, ok(4, 0, sec)),
	}},
}

func testSteps(t *testing.T, backend Backend) {
	for _, tc := range stepCases {
		t.Run(tc.name, func(t *testing.T) {
			open := backend(t)
			clk := fakeclock.New(time.Time{})
			lim := tollgate.New(open(), tollgate.Options{Now: clk.Now})
			key := uniqueKey(t, "k")
			for i, s := range tc.steps {
				clk.Set(t0.Add(s.at))
				limit := tc.limit
				if !s.limit.IsZero() {
					limit = s.limit
				}
				got, err := Apply(tollgate.WithRequestID(context.Background(), s.id), lim, s.op, key, s.cost, limit)
				if err != nil {
					t.Fatalf("step %d (%s %d at %s): %v", i, s.op, s.cost, s.at, err)
				}
				want := s.want
				want.Limit = limit.Units
				if got != want {
					t.Errorf("step %d (%s %d at %s):\n got %+v\nwant %+v", i, s.op, s.cost, s.at, got, want)
				}
			}
		})
	}
}

// Apply calls the Limiter's method for op: Consume, Peek (cost is then
// ignored) or Refund.
func Apply(ctx context.Context, l *tollgate.Limiter, op tollgate.Op, key string, cost int64, limit tollgate.Limit) (tollgate.Result, error) {
	switch op {
	case tollgate.OpPeek:
		return l.Peek(ctx, key, limit)
	case tollgate.OpRefund:
		return l.Refund(ctx, key, cost, limit)
	}
	return l.Consume(ctx, key, cost, limit)
}

func testInvalidInput(t *testing.T, backend Backend) {
	open := backend(t)
	clk := fakeclock.New(t0)
	lim := tollgate.New(open(), tollgate.Options{Now: clk.Now, MaxKeyLen: 16})
	ctx := context.Background()
	key := "valid-key"
	good := tollgate.Limit{Units: 10, Window: minute}
	cases := []struct {
		name  string
		op    tollgate.Op
		key   string
		cost  int64
		limit tollgate.Limit
		want  error
	}{
		{"EmptyKey", tollgate.OpConsume, "", 1, good, tollgate.ErrInvalidKey},
		{"LongKey", tollgate.OpConsume, strings.Repeat("k", 17), 1, good, tollgate.ErrInvalidKey},
		{"ZeroCost", tollgate.OpConsume, key, 0, good, tollgate.ErrInvalidCost},
		{"NegativeCost", tollgate.OpRefund, key, -5, good, tollgate.ErrInvalidCost},
		{"CostAboveUnits", tollgate.OpConsume, key, 11, good, tollgate.ErrCostExceedsLimit},
		{"ZeroLimit", tollgate.OpConsume, key, 1, tollgate.Limit{}, tollgate.ErrInvalidLimit},
		{"ZeroUnits", tollgate.OpPeek, key, 1, tollgate.Limit{Window: minute}, tollgate.ErrInvalidLimit},
		{"TooManyUnits", tollgate.OpConsume, key, 1, tollgate.Limit{Units: tollgate.MaxUnits + 1, Window: minute}, tollgate.ErrInvalidLimit},
		{"ShortWindow", tollgate.OpConsume, key, 1, tollgate.Limit{Units: 10, Window: ms - 1}, tollgate.ErrInvalidLimit},
		{"LongWindow", tollgate.OpConsume, key, 1, tollgate.Limit{Units: 10, Window: tollgate.MaxWindow + 1}, tollgate.ErrInvalidLimit},
		{"NegativeWindow", tollgate.OpConsume, key, 1, tollgate.Limit{Units: 10, Window: -minute}, tollgate.ErrInvalidLimit},
		{"UnknownAlgorithm", tollgate.OpConsume, key, 1, tollgate.Limit{Units: 10, Window: minute, Algorithm: 9}, tollgate.ErrInvalidLimit},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Apply(ctx, lim, c.op, c.key, c.cost, c.limit)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	if err := lim.Reset(ctx, ""); !errors.Is(err, tollgate.ErrInvalidKey) {
		t.Errorf("Reset(\"\") = %v, want ErrInvalidKey", err)
	}
	// None of it counted.
	for _, a := range []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA} {
		got, err := lim.Peek(ctx, key, tollgate.Limit{Units: 10, Window: minute, Algorithm: a})
		if err != nil || got.Used != 0 {
			t.Errorf("%s after bad input: %+v, %v; want nothing used", a, got, err)
		}
	}
	// A refund may exceed the limit's units.
	if _, err := lim.Refund(ctx, key, 11, good); err != nil {
		t.Errorf("Refund above units: %v", err)
	}
}

func testIsolation(t *testing.T, backend Backend) {
	open := backend(t)
	clk := fakeclock.New(t0)
	lim := tollgate.New(open(), tollgate.Options{Now: clk.Now})
	ctx := context.Background()
	base := uniqueKey(t, "")
	// Keys that an unescaped hash tag or a naive encoding would merge.
	keys := []string{"a{b}", "a%7Bb%7D", "a", "a{b", "a}b", "{}", "%", "a:l", "a}:l", "ключ", "a b\n"}
	for i, k := range keys {
		keys[i] = base + k
	}
	for i, k := range keys {
		if _, err := lim.Consume(ctx, k, int64(i+1), tollgate.Limit{Units: 100, Window: minute}); err != nil {
			t.Fatal(err)
		}
	}
	for i, k := range keys {
		for _, a := range []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA} {
			got, err := lim.Peek(ctx, k, tollgate.Limit{Units: 100, Window: minute, Algorithm: a})
			if err != nil {
				t.Fatal(err)
			}
			want := int64(0) // each algorithm keeps its own state
			if a == tollgate.SlidingLog {
				want = int64(i + 1)
			}
			if got.Used != want {
				t.Errorf("key %q %s: used %d, want %d", k, a, got.Used, want)
			}
		}
	}
	// Reset forgets one key, every algorithm, and nothing else.
	if _, err := lim.Consume(ctx, keys[0], 1, tollgate.Limit{Units: 100, Window: minute, Algorithm: tollgate.GCRA}); err != nil {
		t.Fatal(err)
	}
	if err := lim.Reset(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	for _, a := range []tollgate.Algorithm{tollgate.SlidingLog, tollgate.GCRA} {
		if got, _ := lim.Peek(ctx, keys[0], tollgate.Limit{Units: 100, Window: minute, Algorithm: a}); got.Used != 0 {
			t.Errorf("after Reset, %s used %d", a, got.Used)
		}
	}
	if got, _ := lim.Peek(ctx, keys[1], tollgate.Limit{Units: 100, Window: minute}); got.Used != 2 {
		t.Errorf("Reset of %q touched %q: used %d", keys[0], keys[1], got.Used)
	}
}

// testConcurrent: several Limiters, each on its own store (its own client),
// hammer one key; exactly Units units are allowed.
func testConcurrent(t *testing.T, backend Backend) {
	const (
		limiters   = 4
		goroutines = 8 // per limiter
		units      = 500
		attempts   = 40 // per goroutine: 4×8×40 = 1280 > units
	)
	open := backend(t)
	for _, a := range []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA} {
		t.Run(a.String(), func(t *testing.T) {
			key := uniqueKey(t, "hot")
			// The stores' own clocks: a day-long window cannot roll over.
			limit := tollgate.Limit{Units: units, Window: 24 * time.Hour, Algorithm: a}
			var allowed, denied atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, limiters*goroutines)
			for range limiters {
				lim := tollgate.New(open(), tollgate.Options{})
				for range goroutines {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range attempts {
							ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
							res, err := lim.Consume(ctx, key, 1, limit)
							cancel()
							if err != nil {
								errs <- err
								return
							}
							if res.Allowed {
								allowed.Add(1)
							} else {
								denied.Add(1)
							}
						}
					}()
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			// GCRA drains a unit every 173 s at this limit: far longer
			// than the test.
			if got := allowed.Load(); got != units {
				t.Errorf("allowed %d units, want exactly %d (denied %d)", got, units, denied.Load())
			}
			res, err := tollgate.New(open(), tollgate.Options{}).Peek(context.Background(), key, limit)
			if err != nil {
				t.Fatal(err)
			}
			if res.Used != units {
				t.Errorf("store reports %d used, want %d", res.Used, units)
			}
		})
	}
}
