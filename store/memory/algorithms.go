package memory

import (
	"math"
	"time"

	"github.com/tollgate/tollgate"
)

// The state machines below define Tollgate's semantics. The Lua script in
// store/redis/scripts implements the same steps, operation for operation and
// in the same float64 order, so that both stores agree to the bit. All times
// are Unix microseconds.
//
// A state answers reads (peek, and every limit of a denied consume) without
// changing; only an allowed consume and a refund write.

// state is one key's state under one algorithm and window.
type state interface {
	// view returns the figures at now for a check of cost check.
	view(check, units, window, now int64) tollgate.Result
	// consume records cost at now; the caller has checked that it fits.
	// bound is the sliding log's most entries.
	consume(cost, units, window, now int64, bound int)
	// refund gives back up to cost units at now.
	refund(cost, units, window, now int64)
	// idleAt is the instant from which the state equals an empty one, as
	// of its latest write (for GCRA, by the Units of that write).
	idleAt(window int64) int64
}

func newState(a tollgate.Algorithm) state {
	switch a {
	case tollgate.SlidingWindow:
		return &windowState{}
	case tollgate.GCRA:
		return &gcraState{}
	}
	return &logState{}
}

// result builds a Result from usage and µs delays.
func result(allowed bool, units, used, retryUS, resetUS int64) tollgate.Result {
	r := tollgate.Result{
		Allowed:    allowed,
		Limit:      units,
		Used:       used,
		Remaining:  max(0, units-used),
		ResetAfter: micros(resetUS),
	}
	if !r.Allowed {
		// Rounding can put the computed instant at now; a deny always
		// advises waiting.
		r.RetryAfter = micros(max(1, retryUS))
	}
	return r
}

func micros(us int64) time.Duration { return time.Duration(max(0, us)) * time.Microsecond }

// windowState is the sliding-window counter: counts of the current and the
// previous fixed bucket, buckets aligned to the Unix epoch.
type windowState struct {
	start      int64 // start of the current bucket
	curr, prev int64
}

// at returns the state rolled to now, and the time elapsed in its bucket.
func (s windowState) at(window, now int64) (windowState, int64) {
	start := now - now%window
	switch {
	case start == s.start+window:
		s.prev, s.curr, s.start = s.curr, 0, start
	case start > s.start:
		s.prev, s.curr, s.start = 0, 0, start
	}
	// A clock that went back stays in the current bucket; elapsed is
	// clamped to it.
	return s, min(max(0, now-s.start), window-1)
}

func (s *windowState) view(check, units, window, now int64) tollgate.Result {
	r, elapsed := s.at(window, now)
	used := r.curr + weighted(r.prev, elapsed, window)
	var retry, reset int64
	if used+check > units {
		if room := units - check - r.curr; room >= 0 {
			// Fits later in this bucket, once the previous bucket's weight
			// has fallen to room.
			retry = fitAt(r.prev, room, window) - elapsed
		} else {
			// Fits in the next bucket, where this bucket is the previous one.
			retry = window - elapsed + fitAt(r.curr, units-check, window)
		}
	}
	switch {
	case r.curr > 0:
		reset = 2*window - elapsed
	case r.prev > 0:
		reset = window - elapsed
	}
	return result(used+check <= units, units, used, retry, reset)
}

func (s *windowState) consume(cost, _, window, now int64, _ int) {
	*s, _ = s.at(window, now)
	s.curr += cost
}

func (s *windowState) refund(cost, _, window, now int64) {
	*s, _ = s.at(window, now)
	r := min(cost, s.curr)
	s.curr -= r
	s.prev = max(0, s.prev-(cost-r))
}

func (s *windowState) idleAt(window int64) int64 {
	switch {
	case s.curr > 0:
		return s.start + 2*window
	case s.prev > 0:
		return s.start + window
	}
	return math.MinInt64
}

func weighted(prev, elapsed, window int64) int64 {
	return int64(math.Ceil(float64(prev) * float64(window-elapsed) / float64(window)))
}

// fitAt is the first elapsed time in a bucket at which a previous count of
// prev weighs at most room.
func fitAt(prev, room, window int64) int64 {
	if prev <= room {
		return 0
	}
	return int64(math.Ceil(float64(window) - float64(room)*float64(window)/float64(prev)))
}

// gcraState is a leaky bucket (GCRA): level units that drain continuously at
// units per window. Level is a float64 because the drain is fractional.
type gcraState struct {
	level float64
	at    int64 // when level was computed
	units int64 // of the latest write, for idleAt
}

// drained returns the level at now. Only writes store it: composing two
// fractional drains rounds differently from one, so both stores persist at
// the same steps.
func (s *gcraState) drained(units, window, now int64) (float64, int64) {
	level, at := s.level, s.at
	if level > 0 && now >= at+drainTime(level, units, window) {
		// Expired: empty, even if the clock later goes back.
		level, at = 0, 0
	}
	if now > at {
		level = math.Max(0, level-float64(now-at)*float64(units)/float64(window))
		at = now
	}
	return level, at
}

func (s *gcraState) view(check, units, window, now int64) tollgate.Result {
	level, _ := s.drained(units, window, now)
	var retry int64 // the level is fractional: the check is on it, not on Used
	if level+float64(check) > float64(units) {
		retry = int64(math.Ceil((level + float64(check) - float64(units)) * float64(window) / float64(units)))
	}
	reset := int64(math.Ceil(level * float64(window) / float64(units)))
	return result(level+float64(check) <= float64(units), units, int64(math.Ceil(level)), retry, reset)
}

func (s *gcraState) consume(cost, units, window, now int64, _ int) {
	level, at := s.drained(units, window, now)
	s.level, s.at, s.units = level+float64(cost), at, units
}

func (s *gcraState) refund(cost, units, window, now int64) {
	level, at := s.drained(units, window, now)
	s.level, s.at, s.units = math.Max(0, level-float64(cost)), at, units
}

func (s *gcraState) idleAt(window int64) int64 {
	if s.level == 0 {
		return math.MinInt64 // empty now, even if at is ahead of the clock
	}
	return s.at + drainTime(s.level, s.units, window)
}

// drainTime is how long a level surely takes to drain to exactly 0: one unit
// past the exact instant, so that float rounding cannot leave a residue.
func drainTime(level float64, units, window int64) int64 {
	return int64(math.Ceil((level + 1) * float64(window) / float64(units)))
}
