package memory

import (
	"math"
	"slices"

	"github.com/tollgate/tollgate"
)

// logState is the sliding log: entries of allowed requests, oldest first,
// each counted while now < at+window, and the running total of their costs.
// Expired entries are dropped at the next write; reads skip them.
//
// It holds at most bound entries (Request.MaxLogEntries). Below the bound
// every allowed request has an entry of its own. At the bound, a new
// request's units coalesce with an entry in the same slot of width
// ceil(window/(bound-1)) (slots aligned to the Unix epoch): into the newest
// entry when it shares now's slot, else two neighbouring entries of one slot
// merge to make room. A merged entry counts at the latest instant of the
// two, so units are counted late, never early, by less than one slot. The
// live entries span at most one window, which touches at most bound slots:
// with the new request that is bound+1 instants, so two share a slot.
type logState struct {
	entries []logEntry // sorted by at
	total   int64      // sum of the entries' costs
}

type logEntry struct{ at, cost int64 }

// live returns the first live entry's index and the units of the expired
// entries before it.
func (s *logState) live(window, now int64) (int, int64) {
	var gone int64
	i := 0
	for ; i < len(s.entries) && s.entries[i].at <= now-window; i++ {
		gone += s.entries[i].cost
	}
	return i, gone
}

func (s *logState) view(check, units, window, now int64) tollgate.Result {
	i, gone := s.live(window, now)
	live := s.entries[i:]
	used := s.total - gone
	var retry, reset int64
	if used+check > units {
		// The oldest entries leave first: find the one whose departure frees
		// enough for check to fit.
		need, freed := used+check-units, int64(0)
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
	return result(used+check <= units, units, used, retry, reset)
}

// expire drops the expired entries.
func (s *logState) expire(window, now int64) {
	i, gone := s.live(window, now)
	s.entries = slices.Delete(s.entries, 0, i)
	s.total -= gone
}

func (s *logState) consume(cost, _, window, now int64, bound int) {
	s.expire(window, now)
	s.total += cost
	n := len(s.entries)
	if n < bound {
		s.insert(logEntry{at: now, cost: cost})
		return
	}
	slot := (window + int64(bound) - 2) / int64(bound-1)
	newest := &s.entries[n-1]
	if newest.at/slot != now/slot {
		// Merge the newest pair of neighbours that share a slot, and give
		// the request an entry of its own.
		for i := n - 2; i >= 0; i-- {
			if a, b := s.entries[i], &s.entries[i+1]; a.at/slot == b.at/slot {
				b.cost += a.cost
				s.entries = slices.Delete(s.entries, i, i+1)
				s.insert(logEntry{at: now, cost: cost})
				return
			}
		}
		// None (only when the clock went back): join the newest entry.
	}
	newest.cost += cost
	newest.at = max(newest.at, now)
}

// insert adds e after every entry not later than it: at the end, unless the
// clock went back.
func (s *logState) insert(e logEntry) {
	i := len(s.entries)
	for i > 0 && s.entries[i-1].at > e.at {
		i--
	}
	s.entries = slices.Insert(s.entries, i, e)
}

// refund takes units back newest first.
func (s *logState) refund(cost, _, window, now int64) {
	s.expire(window, now)
	for r := cost; r > 0 && len(s.entries) > 0; {
		last := &s.entries[len(s.entries)-1]
		take := min(r, last.cost)
		s.total -= take
		r -= take
		if last.cost -= take; last.cost == 0 {
			s.entries = s.entries[:len(s.entries)-1]
		}
	}
}

func (s *logState) idleAt(window int64) int64 {
	if len(s.entries) == 0 {
		return math.MinInt64
	}
	return s.entries[len(s.entries)-1].at + window
}
