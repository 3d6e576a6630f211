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
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(deny{}, Options{Size: 8, Now: func() time.Time { return now }})
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	limits := []tollgate.Limit{
		{Units: 3, Window: time.Minute},
		{Units: 3, Window: time.Minute, Algorithm: tollgate.GCRA},
		{Units: 4, Window: time.Minute},
	}
	for i := range 5000 {
		key := fmt.Sprint("k", rng.IntN(12))
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
		if err := s.check(); err != nil {
			t.Fatalf("after op %d: %v", i, err)
		}
	}
}

// check verifies the table's invariants.
func (s *Store) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	inRing := make(map[*entry]bool)
	for e := s.lru.next; e != &s.lru; e = e.next {
		if e.next.prev != e {
			return fmt.Errorf("ring broken at %q", e.key)
		}
		inRing[e] = true
	}
	if len(inRing) != s.n || s.n > s.size {
		return fmt.Errorf("%d entries in the ring, n %d, size %d", len(inRing), s.n, s.size)
	}
	indexed := 0
	for key, first := range s.byKey {
		if first == nil {
			return fmt.Errorf("key %q indexed without entries", key)
		}
		seen := make(map[tollgate.Limit]bool)
		for e := first; e != nil; e = e.sibling {
			if e.key != key || !inRing[e] || seen[e.lim] {
				return fmt.Errorf("bad entry %q %v under key %q", e.key, e.lim, key)
			}
			seen[e.lim] = true
			indexed++
		}
	}
	if indexed != s.n {
		return fmt.Errorf("%d entries indexed, n %d", indexed, s.n)
	}
	return nil
}
