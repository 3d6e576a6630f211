package memory_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() tollgate.Store {
		s := memory.New(memory.Options{})
		t.Cleanup(func() { s.Close() })
		return func() tollgate.Store { return s }
	}, storetest.Options{Inspect: func(_ testing.TB, st tollgate.Store) map[string]time.Duration {
		// The memory store forgets idle state by its sweeper: no TTL to
		// read, so each state counts as one with a TTL.
		s := st.(*memory.Store)
		s.Sweep()
		left := map[string]time.Duration{}
		for i := range s.Len() {
			left[fmt.Sprint("state ", i)] = time.Hour
		}
		return left
	}})
}

// Keys whose usage has fallen to 0 are dropped, at once when a call sees it
// and by Sweep otherwise, so memory stays bounded by the active keys.
func TestEviction(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := memory.New(memory.Options{Now: func() time.Time { return now }})
	defer s.Close()
	lim := tollgate.New(s, tollgate.Options{})
	ctx := context.Background()
	for _, a := range []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA} {
		l := tollgate.Limit{Units: 5, Window: time.Second, Algorithm: a}
		for _, k := range []string{"a", "b", "c"} {
			if _, err := lim.Consume(ctx, k, 2, l); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := s.Len(); got != 9 {
		t.Fatalf("Len = %d, want 9", got)
	}
	// A refund to zero drops the key at once.
	if _, err := lim.Refund(ctx, "a", 2, tollgate.PerSecond(5)); err != nil {
		t.Fatal(err)
	}
	if got := s.Len(); got != 8 {
		t.Fatalf("after refund Len = %d, want 8", got)
	}
	// Peeks of unknown keys store nothing.
	if _, err := lim.Peek(ctx, "never", tollgate.PerSecond(5)); err != nil {
		t.Fatal(err)
	}
	if got := s.Len(); got != 8 {
		t.Fatalf("after peek Len = %d, want 8", got)
	}
	// Half a window on, everything is still live.
	now = now.Add(500 * time.Millisecond)
	s.Sweep()
	if got := s.Len(); got != 8 {
		t.Fatalf("mid-window Len = %d, want 8", got)
	}
	// Three windows on (the sliding window keeps two buckets), reads still
	// change nothing, as in Redis, where a peek writes nothing; the sweep
	// then drops every key.
	now = now.Add(3 * time.Second)
	for _, a := range []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA} {
		for _, k := range []string{"a", "b", "c"} { // also tells each shard the time
			if res, err := lim.Peek(ctx, k, tollgate.Limit{Units: 5, Window: time.Second, Algorithm: a}); err != nil || res.Used != 0 {
				t.Fatalf("%s %s: %+v, %v; want nothing used", k, a, res, err)
			}
		}
	}
	if got := s.Len(); got != 8 {
		t.Fatalf("after peeks Len = %d, want 8", got)
	}
	s.Sweep()
	if got := s.Len(); got != 0 {
		t.Fatalf("after the sweep Len = %d, want 0", got)
	}
}

// Sweep drops keys nobody asks about once their usage is surely 0, judged by
// the requests' clock advanced by real time.
func TestSweep(t *testing.T) {
	s := memory.New(memory.Options{})
	defer s.Close()
	lim := tollgate.New(s, tollgate.Options{})
	ctx := context.Background()
	for _, a := range []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA} {
		for _, k := range []string{"a", "b", "c", "d"} {
			if _, err := lim.Consume(ctx, k, 1, tollgate.Limit{Units: 5, Window: time.Millisecond, Algorithm: a}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := lim.Consume(ctx, "hour", 1, tollgate.PerHour(5)); err != nil {
		t.Fatal(err)
	}
	// Every 1 ms window is over after 3 ms (the sliding window's two
	// buckets, GCRA's extra unit); waiting longer only adds margin.
	time.Sleep(10 * time.Millisecond)
	s.Sweep()
	if got := s.Len(); got != 1 {
		t.Fatalf("Len = %d, want 1 (the hour-long key)", got)
	}
}

func TestCloseIdempotent(t *testing.T) {
	s := memory.New(memory.Options{SweepInterval: time.Millisecond})
	s.Close()
	s.Close()
}
