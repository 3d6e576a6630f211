package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/fakeclock"
)

// testStateExpires follows keys across their windows on the store's own
// clock (for Redis, the server's, where TTLs run): random consumes, peeks,
// refunds, resets and request ids, every algorithm alone and several limits
// together, windows of about a second. During the run every piece of state
// must have a TTL; once the windows have passed with no traffic nothing may
// be left; and a consume of the whole limit is then allowed on every key
// with Used equal to its cost. It needs Options.Inspect.
func testStateExpires(t *testing.T, backend Backend, opts Options) {
	if opts.Inspect == nil {
		t.Skip("the store cannot be inspected")
	}
	open := backend(t)
	store := open()
	lim := tollgate.New(store, tollgate.Options{DedupeWindow: 200 * time.Millisecond, MaxLogEntries: 4, Namespace: "expiry"})
	sets := [][]tollgate.Limit{
		{{Units: 5, Window: time.Second}},
		{{Units: 5, Window: time.Second, Algorithm: tollgate.SlidingWindow}},
		{{Units: 5, Window: time.Second, Algorithm: tollgate.GCRA}},
		{{Units: 3, Window: 300 * time.Millisecond}, {Units: 8, Window: time.Second}, {Units: 6, Window: 700 * time.Millisecond, Algorithm: tollgate.GCRA}},
		{{Units: 4, Window: 500 * time.Millisecond, Algorithm: tollgate.SlidingWindow}, {Units: 9, Window: 1200 * time.Millisecond}},
	}
	const keysPerSet, steps = 4, 120
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
	var noTTL, checks int
	deadline := time.Now().Add(3 * time.Second) // bounded in time as in count
	for i := 0; i < steps && time.Now().Before(deadline); i++ {
		set := sets[rng.IntN(len(sets))]
		key := fmt.Sprintf("k%d", rng.IntN(keysPerSet))
		// One key, one set of limits: keys of different sets live apart.
		key = fmt.Sprintf("%s/%d", key, len(set)*10+int(set[0].Algorithm))
		cost := 1 + rng.Int64N(3)
		cctx := ctx
		if rng.IntN(3) == 0 {
			cctx = tollgate.WithRequestID(ctx, fmt.Sprintf("r%d", rng.IntN(3)))
		}
		var err error
		switch r := rng.IntN(10); {
		case r < 5:
			_, err = lim.ConsumeAll(cctx, key, cost, set...)
		case r < 7:
			_, err = lim.PeekAll(ctx, key, set...)
		case r < 9:
			_, err = lim.RefundAll(ctx, key, cost, set...)
		default:
			err = lim.Reset(ctx, key)
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if i%10 == 0 { // inspecting every step would take most of the run
			for k, ttl := range opts.Inspect(t, store) {
				checks++
				if ttl < 0 {
					noTTL++
					t.Errorf("step %d: %s has no TTL", i, k)
				}
			}
		}
		time.Sleep(time.Duration(rng.IntN(15)) * time.Millisecond)
	}
	// The longest-lived state: a sliding window's two buckets of 1 s (up
	// to 2 s), GCRA's extra unit, TTLs rounded up to the millisecond.
	idle := time.Now().Add(2500 * time.Millisecond)
	var left map[string]time.Duration
	for {
		left = opts.Inspect(t, store)
		if len(left) == 0 || time.Now().After(idle) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d inspections of state during the run: %d without a TTL; %d pieces of state left after the windows passed idle", checks, noTTL, len(left))
	if len(left) != 0 {
		names := make([]string, 0, len(left))
		for k := range left {
			names = append(names, k)
		}
		sort.Strings(names)
		t.Fatalf("left after the windows passed idle: %q", names)
	}
	for s, set := range sets {
		for k := range keysPerSet {
			key := fmt.Sprintf("k%d/%d", k, len(set)*10+int(set[0].Algorithm))
			units := set[0].Units
			for _, l := range set {
				units = min(units, l.Units)
			}
			d, err := lim.ConsumeAll(ctx, key, units, set...)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range d.Results {
				if !r.Allowed || r.Used != units {
					t.Errorf("set %d key %s limit %d after idle windows: %+v, want the whole cost %d allowed and used", s, key, i, r, units)
				}
			}
		}
	}
}

// testBoundedLog checks the bounded sliding log against the exact log of
// the same allowed requests, on a fake clock: with a bound of 3 or 4 entries
// and up to 60 requests, Used is never below the exact figure (units are
// never forgotten early) and never above the exact figure a slot earlier
// (units are late by less than one slot, ceil(window/(bound-1))); and no
// consume is allowed that the exact log would deny, so no window holds more
// than the limit. The exact model is a plain list of unit times.
func testBoundedLog(t *testing.T, backend Backend) {
	open := backend(t)
	store := open()
	rapid.Check(t, func(rt *rapid.T) {
		bound := rapid.IntRange(3, 4).Draw(rt, "bound")
		window := time.Duration(rapid.SampledFrom([]int64{10, 60}).Draw(rt, "window_s")) * time.Second
		units := rapid.Int64Range(5, 30).Draw(rt, "units")
		limit := tollgate.Limit{Units: units, Window: window}
		clk := fakeclock.New(t0)
		lim := tollgate.New(store, tollgate.Options{Now: clk.Now, MaxLogEntries: bound})
		key := uniqueKey(t, "bounded")
		w := window.Microseconds()
		slot := (w + int64(bound) - 2) / int64(bound-1)
		// The time of every unit ever allowed and not refunded, oldest
		// first. The store's i-th unit is the exact i-th, counted at the
		// same instant or later in its slot: a refund takes the newest of
		// both, coalescing keeps the order, expiry drops the oldest.
		var exact []int64
		count := func(from int64) (n int64) {
			for _, at := range exact {
				if at > from {
					n++
				}
			}
			return n
		}
		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		for i := range steps {
			clk.Set(clk.Now().Add(time.Duration(rapid.Int64Range(0, w/5).Draw(rt, "advance_us")) * time.Microsecond))
			now := clk.Now().UnixMicro()
			cost := rapid.Int64Range(1, min(units, 4)).Draw(rt, "cost")
			var res tollgate.Result
			var err error
			if rapid.IntRange(0, 5).Draw(rt, "op") == 0 {
				// The refund takes the newest units in both: as many as
				// the store gave back.
				before, perr := lim.Peek(context.Background(), key, limit)
				if perr != nil {
					rt.Fatal(perr)
				}
				res, err = lim.Refund(context.Background(), key, cost, limit)
				exact = exact[:len(exact)-int(before.Used-res.Used)]
			} else {
				res, err = lim.Consume(context.Background(), key, cost, limit)
				if err == nil && res.Allowed {
					if count(now-w)+cost > units {
						rt.Fatalf("step %d: consume of %d allowed, but the exact log holds %d of %d", i, cost, count(now-w), units)
					}
					for range cost {
						exact = append(exact, now)
					}
				}
			}
			if err != nil {
				rt.Fatalf("step %d: %v", i, err)
			}
			lo, hi := count(now-w), count(now-w-slot)
			if res.Used < lo || res.Used > hi {
				rt.Fatalf("step %d: used %d, want between the exact %d and the exact a slot (%dµs) earlier %d", i, res.Used, lo, slot, hi)
			}
		}
	})
}

// testNamespaces: no key of one namespace, whatever bytes it holds, reads or
// changes usage of another, and Reset stays in its namespace.
func testNamespaces(t *testing.T, backend Backend) {
	open := backend(t)
	store := open()
	ctx := context.Background()
	base := uniqueKey(t, "")
	names := []string{"", "inline", "policy:a", "policy:a:b", "policy", "a:b", "a%3Ab", "%", ":", "rls", "\x00", "{x}", "middleware:per-ip"}
	keys := []string{"k", ":k", "b:k", "%3Ak", "\x00premium\x00gina", "a:b:k", "{k}", "%", "policy:a:k", "inline:k", "b%3Ak"}
	limit := tollgate.Limit{Units: 1000, Window: time.Hour}
	type pair struct{ ns, key string }
	cost := map[pair]int64{}
	var n int64
	for _, ns := range names {
		lim := tollgate.New(store, tollgate.Options{Namespace: ns})
		for _, k := range keys {
			n++
			if _, err := lim.Consume(ctx, base+k, n, limit); err != nil {
				t.Fatal(err)
			}
			cost[pair{ns, k}] = n
		}
	}
	check := func(skip pair) {
		t.Helper()
		for p, want := range cost {
			if p == skip {
				want = 0
			}
			got, err := tollgate.New(store, tollgate.Options{}).Namespace(p.ns).Peek(ctx, base+p.key, limit)
			if err != nil {
				t.Fatal(err)
			}
			if got.Used != want {
				t.Errorf("namespace %q key %q: used %d, want %d", p.ns, p.key, got.Used, want)
			}
		}
	}
	check(pair{"-", "-"})
	victim := pair{"policy:a", ":k"}
	if err := tollgate.New(store, tollgate.Options{Namespace: victim.ns}).Reset(ctx, base+victim.key); err != nil {
		t.Fatal(err)
	}
	check(victim)
}

// testMultiLimits: several limits of one key in one call are all or
// nothing, report each limit, and share state with single calls of the same
// algorithm and window.
func testMultiLimits(t *testing.T, backend Backend) {
	open := backend(t)
	clk := fakeclock.New(t0)
	lim := tollgate.New(open(), tollgate.Options{Now: clk.Now})
	ctx := context.Background()
	key := uniqueKey(t, "multi")
	burst := tollgate.Limit{Units: 3, Window: time.Second, Algorithm: tollgate.GCRA}
	hourly := tollgate.Limit{Units: 10, Window: time.Hour}
	daily := tollgate.Limit{Units: 12, Window: 24 * time.Hour, Algorithm: tollgate.SlidingWindow}
	limits := []tollgate.Limit{burst, hourly, daily}
	d, err := lim.ConsumeAll(ctx, key, 3, limits...)
	if err != nil || !d.Allowed || d.RetryAfter != 0 {
		t.Fatalf("first consume: %+v, %v", d, err)
	}
	for i, want := range []int64{3, 3, 3} {
		if r := d.Results[i]; !r.Allowed || r.Used != want || r.Limit != limits[i].Units {
			t.Errorf("limit %d: %+v, want allowed with used %d", i, r, want)
		}
	}
	if d.Tightest() != 0 {
		t.Errorf("Tightest = %d, want 0 (the burst, 0 remaining)", d.Tightest())
	}
	// The burst is full: denied, and nothing recorded anywhere.
	d, err = lim.ConsumeAll(ctx, key, 2, limits...)
	if err != nil || d.Allowed {
		t.Fatalf("second consume: %+v, %v; want denied", d, err)
	}
	if d.Results[0].Allowed || !d.Results[1].Allowed || !d.Results[2].Allowed || d.RetryAfter != d.Results[0].RetryAfter || d.RetryAfter <= 0 {
		t.Errorf("second consume: %+v; want only the burst denying, its RetryAfter overall", d)
	}
	for i, l := range limits {
		if r, _ := lim.Peek(ctx, key, l); r.Used != 3 {
			t.Errorf("limit %d after a denied multi-limit consume: used %d, want 3", i, r.Used)
		}
	}
	// Later the burst has drained; the hour is what denies now.
	clk.Set(t0.Add(10 * time.Second))
	for range 2 {
		if d, err = lim.ConsumeAll(ctx, key, 3, limits...); err != nil || !d.Allowed {
			t.Fatalf("consume after the burst drained: %+v, %v", d, err)
		}
		clk.Set(clk.Now().Add(10 * time.Second))
	}
	d, _ = lim.ConsumeAll(ctx, key, 3, limits...)
	if d.Allowed || d.Results[0].Allowed != true || d.Results[1].Allowed || d.Tightest() != 1 {
		t.Errorf("at 9 of 10 per hour: %+v; want the hour denying", d)
	}
	// A single call on the hour's algorithm and window shares its state;
	// another window does not.
	if r, _ := lim.Consume(ctx, key, 1, hourly); !r.Allowed || r.Used != 10 {
		t.Errorf("single consume on the hourly limit: %+v, want used 10", r)
	}
	if r, _ := lim.Peek(ctx, key, tollgate.Limit{Units: 10, Window: 2 * time.Hour}); r.Used != 0 {
		t.Errorf("another window sees used %d, want 0", r.Used)
	}
	// Refund gives back to every limit named.
	if d, err = lim.RefundAll(ctx, key, 4, hourly, daily); err != nil || d.Results[0].Used != 6 || d.Results[1].Used != 5 {
		t.Errorf("refund: %+v, %v; want 6 and 5 used", d, err)
	}
	// Bad sets of limits are errors that change nothing.
	for _, bad := range [][]tollgate.Limit{nil, {hourly, hourly}, {hourly, {Units: 99, Window: time.Hour}}, make([]tollgate.Limit, tollgate.MaxLimits+1)} {
		if _, err := lim.ConsumeAll(ctx, key, 1, bad...); !errors.Is(err, tollgate.ErrInvalidLimits) || !errors.Is(err, tollgate.ErrInvalidLimit) {
			t.Errorf("%d limits: %v, want ErrInvalidLimits", len(bad), err)
		}
	}
	if _, err := lim.ConsumeAll(ctx, key, 4, burst, hourly); !errors.Is(err, tollgate.ErrCostExceedsLimit) {
		t.Errorf("cost above one limit: %v, want ErrCostExceedsLimit", err)
	}
	if r, _ := lim.Peek(ctx, key, hourly); r.Used != 6 {
		t.Errorf("after bad calls: used %d, want 6", r.Used)
	}
}
