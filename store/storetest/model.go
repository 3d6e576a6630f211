package storetest

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/fakeclock"
)

// testModel drives a store and a reference model with the same random
// operations on a fake clock and requires identical Results. The models keep
// a plain event log (sliding log, sliding window) or the textbook formula
// (GCRA) and recompute every figure from scratch.
func testModel(t *testing.T, backend Backend, opts Options) {
	for _, a := range []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA} {
		t.Run(a.String(), func(t *testing.T) {
			open := backend(t)
			store := open()
			rapid.Check(t, func(rt *rapid.T) {
				// Windows and dedupe windows of a minute or more: a Redis
				// store's TTLs run in real time, not on the fake clock,
				// and after a step back in time a key written just
				// before it is kept only for its TTL's headroom (an
				// eighth of the window, at most a second). So the
				// headroom is a second, longer than a slow case (WAIT on
				// a loaded machine) takes between two steps.
				window := rapid.SampledFrom([]time.Duration{time.Minute, 10 * time.Minute, time.Hour}).Draw(rt, "window")
				units := rapid.Int64Range(1, 20).Draw(rt, "units")
				limit := tollgate.Limit{Units: units, Window: window, Algorithm: a}
				start := time.Duration(rapid.Int64Range(0, int64(window)).Draw(rt, "start"))
				clk := fakeclock.New(t0.Add(start).Truncate(time.Microsecond))
				dedupe := time.Duration(rapid.SampledFrom([]int64{30, 180, 7200}).Draw(rt, "dedupe_s")) * time.Second
				lim := tollgate.New(store, tollgate.Options{Now: clk.Now, DedupeWindow: dedupe})
				key := uniqueKey(t, "model")
				m := newModel(a)
				m.generatesIDs = opts.GeneratesIDs
				w := window.Microseconds()
				// Mostly short steps, sometimes past a window edge; for the
				// algorithms that define it, sometimes back in time, as a
				// caller's clock may go.
				gens := []*rapid.Generator[int64]{rapid.Int64Range(0, 3), rapid.Int64Range(0, w/4), rapid.Int64Range(w-2, w+2)}
				if a != tollgate.SlidingWindow {
					gens = append(gens, rapid.Int64Range(-w/4, 0))
				}
				advance := rapid.OneOf(gens...)
				steps := rapid.IntRange(1, 40).Draw(rt, "steps")
				for i := range steps {
					adv := advance.Draw(rt, "advance_us")
					clk.Set(clk.Now().Add(time.Duration(adv) * time.Microsecond))
					op := rapid.SampledFrom([]tollgate.Op{tollgate.OpConsume, tollgate.OpConsume, tollgate.OpPeek, tollgate.OpRefund}).Draw(rt, "op")
					cost := rapid.Int64Range(1, units).Draw(rt, "cost")
					if op == tollgate.OpPeek {
						cost = 1
					}
					// A few ids, so that repeats happen, also after refunds.
					id := rapid.SampledFrom([]string{"", "", "a", "b"}).Draw(rt, "id")
					ctx := tollgate.WithRequestID(context.Background(), id)
					if op != tollgate.OpConsume {
						id = ""
					}
					got, err := Apply(ctx, lim, op, key, cost, limit)
					if err != nil {
						rt.Fatalf("step %d: %v", i, err)
					}
					want := m.step(op, cost, units, window.Microseconds(), clk.Now().UnixMicro(), id, min(dedupe, window).Microseconds())
					if got != want {
						rt.Fatalf("step %d: %s %d at +%dµs:\n store %+v\n model %+v", i, op, cost, adv, got, want)
					}
				}
			})
		})
	}
}

// model is a reference implementation of one algorithm, plus request ids.
type model struct {
	alg interface {
		apply(op tollgate.Op, cost, units, window, now int64) tollgate.Result
	}
	// ids of allowed consumes: "cost/id" → when allowed.
	ids map[string]int64
	// generatesIDs: every consume has an id, if only the store's own.
	generatesIDs bool
}

func newModel(a tollgate.Algorithm) *model {
	switch a {
	case tollgate.SlidingWindow:
		return &model{alg: &windowModel{}, ids: map[string]int64{}}
	case tollgate.GCRA:
		return &model{alg: &gcraModel{}, ids: map[string]int64{}}
	}
	return &model{alg: &logModel{}, ids: map[string]int64{}}
}

// step applies one call. A consume with the id of one allowed less than
// dedupe ago is a repeat: the figures of a peek, but allowed. A refund ends
// the deduplication of every earlier request.
func (m *model) step(op tollgate.Op, cost, units, window, now int64, id string, dedupe int64) tollgate.Result {
	if op == tollgate.OpConsume && id != "" {
		if at, ok := m.ids[fmt.Sprint(cost, "/", id)]; ok && at > now-dedupe {
			r := m.alg.apply(tollgate.OpPeek, 1, units, window, now)
			r.Allowed, r.RetryAfter = true, 0
			return r
		}
	}
	r := m.alg.apply(op, cost, units, window, now)
	switch {
	case op == tollgate.OpRefund:
		clear(m.ids)
	case op == tollgate.OpConsume && r.Allowed && (id != "" || m.generatesIDs):
		// Ids too old to count are dropped as a new one comes (this shows
		// only when the clock goes back).
		for k, at := range m.ids {
			if at <= now-dedupe {
				delete(m.ids, k)
			}
		}
		if id != "" {
			m.ids[fmt.Sprint(cost, "/", id)] = now
		}
	}
	return r
}

type event struct{ at, cost int64 }

// refundEvents removes cost units from the newest events.
func refundEvents(events []event, cost int64) []event {
	for cost > 0 && len(events) > 0 {
		last := &events[len(events)-1]
		take := min(cost, last.cost)
		last.cost -= take
		cost -= take
		if last.cost == 0 {
			events = events[:len(events)-1]
		}
	}
	return events
}

func res(allowed bool, units, used, retry, reset int64) tollgate.Result {
	r := tollgate.Result{Allowed: allowed, Limit: units, Used: used, Remaining: max(0, units-used), ResetAfter: time.Duration(reset) * time.Microsecond}
	if !allowed {
		r.RetryAfter = time.Duration(max(1, retry)) * time.Microsecond
	}
	return r
}

// logModel: every allowed request, forever; the window is a filter.
type logModel struct{ events []event }

func (m *logModel) live(now, window int64) []event { return live(m.events, now, window) }

func live(events []event, now, window int64) []event {
	var l []event
	for _, e := range events {
		if e.at > now-window {
			l = append(l, e)
		}
	}
	return l
}

func sum(events []event) (n int64) {
	for _, e := range events {
		n += e.cost
	}
	return n
}

func (m *logModel) apply(op tollgate.Op, cost, units, window, now int64) tollgate.Result {
	// Only a write forgets expired events: a clock that goes back before
	// one sees them again.
	events := m.live(now, window)
	// By time, so that "newest" and "oldest" mean what they say when the
	// clock went back.
	slices.SortStableFunc(events, func(a, b event) int { return cmp.Compare(a.at, b.at) })
	check := int64(1)
	allowed := false
	switch op {
	case tollgate.OpConsume:
		check = cost
		if allowed = sum(events)+cost <= units; allowed {
			events = append(events, event{now, cost})
			slices.SortStableFunc(events, func(a, b event) int { return cmp.Compare(a.at, b.at) })
			m.events = events
		}
	case tollgate.OpRefund:
		events = refundEvents(events, cost)
		m.events = events
	}
	used := sum(events)
	if op != tollgate.OpConsume {
		allowed = used+1 <= units
	}
	var retry, reset int64
	if !allowed {
		// The earliest instant at which the units still live then, plus
		// check, fit: scan candidate instants (each entry's expiry).
		for _, e := range events {
			at := e.at + window
			if sum(live(events, at, window))+check <= units {
				retry = at - now
				break
			}
		}
	}
	if len(events) > 0 {
		reset = events[len(events)-1].at + window - now
	}
	return res(allowed, units, used, retry, reset)
}

// windowModel: every allowed request; each figure recomputed from the
// events that fall in the current and the previous bucket.
type windowModel struct{ events []event }

func (m *windowModel) usedAt(now, window, extra int64) int64 {
	start := now - now%window
	var curr, prev int64
	for _, e := range m.events {
		switch {
		case e.at >= start:
			curr += e.cost
		case e.at >= start-window:
			prev += e.cost
		}
	}
	return curr + extra + int64(math.Ceil(float64(prev)*float64(window-(now-start))/float64(window)))
}

func (m *windowModel) apply(op tollgate.Op, cost, units, window, now int64) tollgate.Result {
	start := now - now%window
	// Events older than the previous bucket can never count again.
	var kept []event
	for _, e := range m.events {
		if e.at >= start-window {
			kept = append(kept, e)
		}
	}
	m.events = kept
	check := int64(1)
	allowed := false
	switch op {
	case tollgate.OpConsume:
		check = cost
		if allowed = m.usedAt(now, window, 0)+cost <= units; allowed {
			m.events = append(m.events, event{at: now, cost: cost})
		}
	case tollgate.OpRefund:
		m.events = refundEvents(m.events, cost)
	}
	if op != tollgate.OpConsume {
		allowed = m.usedAt(now, window, 0)+1 <= units
	}
	var retry, reset int64
	if !allowed {
		// Search the first instant, to the microsecond, at which check fits,
		// by bisection over [now, end of the next bucket].
		lo, hi := now, start+2*window
		for lo < hi {
			mid := lo + (hi-lo)/2
			if m.usedAt(mid, window, 0)+check <= units {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		retry = lo - now
	}
	var curr, prev int64
	for _, e := range m.events {
		if e.at >= start {
			curr += e.cost
		} else {
			prev += e.cost
		}
	}
	switch {
	case curr > 0:
		reset = start + 2*window - now
	case prev > 0:
		reset = start + window - now
	}
	return res(allowed, units, m.usedAt(now, window, 0), retry, reset)
}

// gcraModel: a token bucket of capacity units draining units per window,
// as in the GCRA literature (the level is the bucket's content).
type gcraModel struct {
	level float64
	at    int64
}

func (m *gcraModel) apply(op tollgate.Op, cost, units, window, now int64) tollgate.Result {
	// Only a write stores what it computes, expiry included.
	level, at := m.level, m.at
	if level > 0 && now >= at+int64(math.Ceil((level+1)*float64(window)/float64(units))) {
		level, at = 0, 0 // the state expired
	}
	if now > at {
		level = math.Max(0, level-float64(now-at)*float64(units)/float64(window))
	}
	check := int64(1)
	switch op {
	case tollgate.OpConsume:
		check = cost
		if level+float64(cost) <= float64(units) {
			m.level, m.at = level+float64(cost), max(now, at)
			return res(true, units, int64(math.Ceil(m.level)), 0, int64(math.Ceil(m.level*float64(window)/float64(units))))
		}
	case tollgate.OpRefund:
		level = math.Max(0, level-float64(cost))
		m.level, m.at = level, max(now, at)
		if level == 0 {
			m.at = 0 // an empty bucket has no time
		}
	}
	allowed := level+float64(check) <= float64(units)
	var retry int64
	if !allowed {
		retry = int64(math.Ceil((level + float64(check) - float64(units)) * float64(window) / float64(units)))
	}
	return res(allowed, units, int64(math.Ceil(level)), retry, int64(math.Ceil(level*float64(window)/float64(units))))
}
