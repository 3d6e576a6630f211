package overlimit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

// deny denies everything with a RetryAfter of a few seconds.
type deny struct{}

func (deny) Do(_ context.Context, req tollgate.Request) (tollgate.Decision, error) {
	retry := time.Duration(req.Cost) * time.Second
	return tollgate.Decision{RetryAfter: retry, Results: []tollgate.Result{{Limit: req.Limits[0].Units, Used: req.Limits[0].Units,
		RetryAfter: retry, ResetAfter: time.Minute}}}, nil
}

func (deny) Reset(context.Context, string) error { return nil }

// TestTableInvariants applies random operations and checks after each that
// the LRU ring, the key index and the count agree.
func TestTableInvariants(t *testing.T) {
	t.Run("one shard", func(t *testing.T) { testInvariants(t, 8, 12) })
	t.Run("sharded", func(t *testing.T) { testInvariants(t, shardMinSize, 3000) })
}

func testInvariants(t *testing.T, size, keys int) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(deny{}, Options{Size: size, Now: func() time.Time { return now }})
	if want := 1 + (shardCount-1)*min(1, size/shardMinSize); len(s.shards) != want {
		t.Fatalf("%d shards for size %d, want %d", len(s.shards), size, want)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	limits := []tollgate.Limit{
		{Units: 3, Window: time.Minute},
		{Units: 3, Window: time.Minute, Algorithm: tollgate.GCRA},
		{Units: 4, Window: time.Minute},
	}
	for i := range 20000 {
		key := fmt.Sprint("k", rng.IntN(keys))
		lim := limits[rng.IntN(len(limits))]
		switch rng.IntN(10) {
		case 0:
			_ = s.Reset(ctx, key)
		case 1:
			_, _ = s.Do(ctx, tollgate.Request{Op: tollgate.OpRefund, Key: key, Limits: []tollgate.Limit{lim}, Cost: 1})
		case 2:
			now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
		default:
			op := tollgate.OpConsume
			if rng.IntN(4) == 0 {
				op = tollgate.OpPeek
			}
			_, _ = s.Do(ctx, tollgate.Request{Op: op, Key: key, Limits: []tollgate.Limit{lim}, Cost: 1 + rng.Int64N(3)})
		}
		if i%max(1, size/8) != 0 && i < 19999 {
			continue // checking a big table after every op would be slow
		}
		if err := s.check(); err != nil {
			t.Fatalf("after op %d: %v", i, err)
		}
	}
}

// check verifies the table's invariants.
func (s *Store) check() error {
	for i := range s.shards {
		if err := s.shards[i].check(); err != nil {
			return fmt.Errorf("shard %d: %w", i, err)
		}
	}
	return nil
}

func (sh *shard) check() error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	inRing := make(map[*entry]bool)
	for e := sh.lru.next; e != &sh.lru; e = e.next {
		if e.next.prev != e {
			return fmt.Errorf("ring broken at %q", e.key)
		}
		inRing[e] = true
	}
	if len(inRing) != sh.n || sh.n > sh.size {
		return fmt.Errorf("%d entries in the ring, n %d, size %d", len(inRing), sh.n, sh.size)
	}
	indexed := 0
	for key, byLim := range sh.byKey {
		if len(byLim) == 0 {
			return fmt.Errorf("key %q indexed without entries", key)
		}
		for lim, e := range byLim {
			if e.key != key || e.lim != lim || !inRing[e] {
				return fmt.Errorf("bad entry %q %v under key %q", e.key, e.lim, key)
			}
			indexed++
		}
	}
	if indexed != sh.n {
		return fmt.Errorf("%d entries indexed, n %d", indexed, sh.n)
	}
	return nil
}

// BenchmarkLookupLimitsPerKey: a lookup costs the same however many limits
// the key has denials remembered for (it used to walk them all).
func BenchmarkLookupLimitsPerKey(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			s := New(deny{}, Options{Size: 10 * n, Now: func() time.Time { return now }})
			ctx := context.Background()
			req := func(i int) tollgate.Request {
				return tollgate.Request{Op: tollgate.OpConsume, Key: "k", Cost: 1, Limits: []tollgate.Limit{{Units: int64(i + 1), Window: time.Hour}}}
			}
			for i := range n {
				_, _ = s.Do(ctx, req(i))
			}
			r := req(0)
			b.ResetTimer()
			for range b.N {
				_, _ = s.Do(ctx, r)
			}
		})
	}
}
