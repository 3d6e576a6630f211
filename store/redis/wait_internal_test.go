package redis

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/fakeclock"
)

// The waiting path's time decisions run on the store's clock (Options.Now):
// after a refused dial the slot's calls fail fast for dialBackoff, and the
// slot-map lookups behind them are paced at one per lookupEvery.
func TestWaitPathClock(t *testing.T) {
	clk := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	s := &Store{now: clk.Now, dialOff: new([16384]atomic.Int64), waiting: make(chan struct{})}
	const sl = 42
	s.dialOff[sl].Store(clk.Now().Add(dialBackoff).UnixNano()) // as backOffDials sets it

	canceled, cancel := context.WithCancel(context.Background())
	cancel() // past the fast-fail check, a call would wait for a place; this one gives up
	for _, tc := range []struct {
		advance time.Duration
		want    error
	}{
		{0, ErrCircuitOpen},
		{dialBackoff - time.Nanosecond, ErrCircuitOpen},
		{time.Nanosecond, context.Canceled}, // the backoff is over: the call goes on
	} {
		clk.Advance(tc.advance)
		if _, err := s.execAndWait(canceled, sl, nil, nil); !errors.Is(err, tc.want) {
			t.Errorf("at +%s: %v, want %v", tc.advance, err, tc.want)
		}
	}
	if _, err := s.execAndWait(canceled, sl+1, nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("another slot: %v, want no backoff", err)
	}

	var p pacer
	for _, tc := range []struct {
		advance time.Duration
		want    bool
	}{{0, true}, {0, false}, {lookupEvery - time.Nanosecond, false}, {time.Nanosecond, true}, {lookupEvery / 2, false}} {
		clk.Advance(tc.advance)
		if got := p.allow(clk.Now()); got != tc.want {
			t.Errorf("pacer at +%s: %t, want %t", tc.advance, got, tc.want)
		}
	}
}
