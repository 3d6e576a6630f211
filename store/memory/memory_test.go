package memory_test

import (
	"context"
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
	})
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
	// Three windows on (the sliding window keeps two buckets), nothing is.
	now = now.Add(3 * time.Second)
	if _, err := lim.Peek(ctx, "never", tollgate.PerSecond(5)); err != nil { // the store learns the time
		t.Fatal(err)
	}
	s.Sweep()
	if got := s.Len(); got != 0 {
		t.Fatalf("idle Len = %d, want 0", got)
	}
}

func TestCloseIdempotent(t *testing.T) {
	s := memory.New(memory.Options{SweepInterval: time.Millisecond})
	s.Close()
	s.Close()
}
