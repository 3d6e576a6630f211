package memory

import (
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/tollgate/tollgate"
)

// The state machines below define Tollgate's semantics. The Lua scripts in
// store/redis/scripts implement the same steps, operation for operation and
// in the same float64 order, so that both stores agree to the bit. All times
// are Unix microseconds.

// state is one key's state under one algorithm.
type state interface {
	// apply performs op at now and returns the result and the instant from
	// which the state equals an empty one, so that it can be evicted. id is
	// the request id a consume records, if the state keeps ids.
	apply(op tollgate.Op, cost, units, window, now int64, id string) (res tollgate.Result, idleAt int64)
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

// checkCost is the cost that Allowed and RetryAfter describe: the request's
// own for a consume, 1 for peek and refund.
func checkCost(op tollgate.Op, cost int64) int64 {
	if op == tollgate.OpConsume {
		return cost
	}
	return 1
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
	if !allowed {
		// Rounding can put the computed instant at now; a deny always
		// advises waiting.
		r.RetryAfter = micros(max(1, retryUS))
	}
	return r
}

func micros(us int64) time.Duration { return time.Duration(max(0, us)) * time.Microsecond }

// logState is the exact sliding log: one entry per allowed request, oldest
// first, and the running total of their costs. An entry allowed at t counts
// while now < t+window.
type logState struct {
	entries []logEntry // entries[head:] are live, oldest first
	head    int
	total   int64
	// refunded is the newest entry's time at the latest refund that gave
	// units back: the refund ends the deduplication of every request
	// allowed until then.
	refunded int64
	// ids finds the entries that carry a request id, by member (cost and
	// id, as the Redis log names them), giving the time they were allowed.
	ids map[string]int64
}

type logEntry struct {
	at, cost int64
	id       string // request id, or ""
}

func member(cost int64, id string) string { return strconv.FormatInt(cost, 10) + ":=" + id }

// seen reports whether a consume of cost with id was allowed less than
// dedupe ago and after the latest refund. One allowed earlier than that
// loses its id, so that the new consume can carry it.
func (s *logState) seen(cost int64, id string, now, dedupe int64) bool {
	at, ok := s.ids[member(cost, id)]
	if !ok {
		return false
	}
	if at > now-dedupe && at > s.refunded {
		return true
	}
	s.dropID(at, cost, id)
	return false
}

// dropID forgets the id of the entry (at, cost, id).
func (s *logState) dropID(at, cost int64, id string) {
	delete(s.ids, member(cost, id))
	for i := len(s.entries) - 1; i >= s.head; i-- {
		if e := &s.entries[i]; e.at == at && e.cost == cost && e.id == id {
			e.id = ""
			return
		}
	}
}

func (s *logState) apply(op tollgate.Op, cost, units, window, now int64, id string) (tollgate.Result, int64) {
	for s.head < len(s.entries) && s.entries[s.head].at <= now-window {
		if e := s.entries[s.head]; e.id != "" {
			delete(s.ids, member(e.cost, e.id))
		}
		s.total -= s.entries[s.head].cost
		s.head++
	}
	if s.head > 0 && s.head*2 >= len(s.entries) { // compact, amortised O(1)
		s.entries = append(s.entries[:0], s.entries[s.head:]...)
		s.head = 0
	}

	var allowed bool
	switch op {
	case tollgate.OpConsume:
		if allowed = s.total+cost <= units; allowed {
			s.insert(logEntry{at: now, cost: cost, id: id})
			s.total += cost
			if id != "" {
				if s.ids == nil {
					s.ids = make(map[string]int64)
				}
				s.ids[member(cost, id)] = now
			}
		}
	case tollgate.OpRefund:
		if len(s.entries) > s.head {
			// Void every id in the log, whatever the clock says.
			s.refunded = max(s.refunded, s.entries[len(s.entries)-1].at)
		}
		for r := cost; r > 0 && len(s.entries) > s.head; {
			last := &s.entries[len(s.entries)-1]
			take := min(r, last.cost)
			if last.id != "" {
				delete(s.ids, member(last.cost, last.id))
				last.id = ""
			}
			s.total -= take
			r -= take
			if last.cost -= take; last.cost == 0 {
				s.entries = s.entries[:len(s.entries)-1]
			}
		}
		allowed = s.total+1 <= units
	default:
		allowed = s.total+1 <= units
	}

	live := s.entries[s.head:]
	var retry, reset int64
	if !allowed {
		// The oldest entries leave first: find the one whose departure frees
		// enough for check to fit.
		need := s.total + checkCost(op, cost) - units
		var freed int64
		for _, e := range live {
			if freed += e.cost; freed >= need {
				retry = e.at + window - now
				break
			}
		}
	}
	if len(live) > 0 {
		reset = live[len(live)-1].at + window - now
	}
	return result(allowed, units, s.total, retry, reset), now + reset
}

// insert adds e after every entry not later than it: at the end, unless the
// clock went back.
func (s *logState) insert(e logEntry) {
	i := len(s.entries)
	for i > s.head && s.entries[i-1].at > e.at {
		i--
	}
	s.entries = slices.Insert(s.entries, i, e)
}

// windowState is the sliding-window counter: counts of the current and the
// previous fixed bucket, buckets aligned to the Unix epoch.
type windowState struct {
	start      int64 // start of the current bucket
	curr, prev int64
}

func (s *windowState) apply(op tollgate.Op, cost, units, window, now int64, _ string) (tollgate.Result, int64) {
	start := now - now%window
	switch {
	case start == s.start+window:
		s.prev, s.curr = s.curr, 0
		s.start = start
	case start > s.start:
		s.prev, s.curr = 0, 0
		s.start = start
	}
	// A clock that went back (or a changed window) stays in the current
	// bucket; elapsed is clamped to it.
	elapsed := min(max(0, now-s.start), window-1)

	var allowed bool
	switch op {
	case tollgate.OpConsume:
		if allowed = s.used(elapsed, window)+cost <= units; allowed {
			s.curr += cost
		}
	case tollgate.OpRefund:
		r := min(cost, s.curr)
		s.curr -= r
		s.prev = max(0, s.prev-(cost-r))
		allowed = s.used(elapsed, window)+1 <= units
	default:
		allowed = s.used(elapsed, window)+1 <= units
	}

	var retry, reset int64
	if !allowed {
		check := checkCost(op, cost)
		if room := units - check - s.curr; room >= 0 {
			// Fits later in this bucket, once the previous bucket's weight
			// has fallen to room.
			retry = fitAt(s.prev, room, window) - elapsed
		} else {
			// Fits in the next bucket, where this bucket is the previous one.
			retry = window - elapsed + fitAt(s.curr, units-check, window)
		}
	}
	switch {
	case s.curr > 0:
		reset = 2*window - elapsed
	case s.prev > 0:
		reset = window - elapsed
	}
	return result(allowed, units, s.used(elapsed, window), retry, reset), now + reset
}

// used is the estimate: the current count plus the previous count weighted by
// the share of the previous bucket still inside the sliding window.
func (s *windowState) used(elapsed, window int64) int64 {
	return s.curr + weighted(s.prev, elapsed, window)
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
}

func (s *gcraState) apply(op tollgate.Op, cost, units, window, now int64, _ string) (tollgate.Result, int64) {
	level, at := s.level, s.at
	if now >= s.idleAt(units, window) {
		// Expired: empty, even if the clock later goes back.
		level, at = 0, 0
	}
	if now > at {
		level = math.Max(0, level-float64(now-at)*float64(units)/float64(window))
		at = now
	}
	var allowed bool
	switch op {
	case tollgate.OpConsume:
		if allowed = level+float64(cost) <= float64(units); allowed {
			level += float64(cost)
			s.level, s.at = level, at
		}
	case tollgate.OpRefund:
		level = math.Max(0, level-float64(cost))
		s.level, s.at = level, at
		allowed = level+1 <= float64(units)
	default:
		allowed = level+1 <= float64(units)
	}
	// Only an allowed consume and a refund store the drained level: the
	// drain is fractional, and composing two drains rounds differently
	// from one, so both stores must persist at the same steps.
	var retry int64
	if !allowed {
		retry = int64(math.Ceil((level + float64(checkCost(op, cost)) - float64(units)) * float64(window) / float64(units)))
	}
	reset := int64(math.Ceil(level * float64(window) / float64(units)))
	return result(allowed, units, int64(math.Ceil(level)), retry, reset), s.idleAt(units, window)
}

// idleAt is when the stored level has surely drained to exactly 0: one unit
// past the exact instant, so that float rounding cannot leave a residue.
func (s *gcraState) idleAt(units, window int64) int64 {
	if s.level == 0 {
		return math.MinInt64 // empty now, even if at is ahead of the clock
	}
	return s.at + int64(math.Ceil((s.level+1)*float64(window)/float64(units)))
}
