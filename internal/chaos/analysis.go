package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Recovery measures how long after since every slot in slots served a call
// again: for each slot, the end of the first successful call (allowed or
// denied) that started at or after since. It returns the longest of those
// delays and the slots that have had no such call yet. The figure includes
// the wait for the load to reach each slot (with DefaultRate and 1,000 cold
// keys, about half a second per key).
func (l *Load) Recovery(since time.Time, slots []int) (time.Duration, []int) {
	ops := l.records()
	from := l.At(since)
	want := make(map[int]bool, len(slots))
	for _, s := range slots {
		want[s] = true
	}
	var worst time.Duration
	for _, o := range ops[firstEndingAt(ops, from):] {
		if o.kind != OK || o.start < from || !want[int(o.slot)] {
			continue
		}
		delete(want, int(o.slot))
		worst = max(worst, o.end-from)
		if len(want) == 0 {
			break
		}
	}
	var missing []int
	for s := range want {
		missing = append(missing, s)
	}
	slices.Sort(missing)
	return worst, missing
}

// Outage is a time during which calls on one slot failed and none
// succeeded: from the start of the first failed call after the last success
// to the end of the next successful call, or to the end of the analysed
// interval when Open.
type Outage struct {
	Slot       int
	Start, End time.Time
	Open       bool
	Failures   int
	Last       Kind // the last failure's kind
}

// Duration is End - Start.
func (o Outage) Duration() time.Duration { return o.End.Sub(o.Start) }

// Outages returns the outages of every slot among the calls that ended in
// [from, to], ordered by start. Failed calls that started before a success
// ended do not open an outage: the slot served after them.
func (l *Load) Outages(from, to time.Time) []Outage {
	ops := l.records()
	f, t := l.At(from), l.At(to)
	type state struct {
		lastOK   time.Duration
		start    time.Duration
		failing  bool
		failures int
		last     Kind
	}
	st := map[int]*state{}
	var out []Outage
	for _, o := range ops[firstEndingAt(ops, f):] {
		if o.end > t {
			break
		}
		s := st[int(o.slot)]
		if s == nil {
			s = &state{}
			st[int(o.slot)] = s
		}
		if o.kind == OK {
			if s.failing {
				out = append(out, Outage{Slot: int(o.slot), Start: l.Time(s.start), End: l.Time(o.end), Failures: s.failures, Last: s.last})
				s.failing, s.failures = false, 0
			}
			s.lastOK = max(s.lastOK, o.end)
			continue
		}
		if o.start < s.lastOK {
			continue
		}
		if !s.failing || o.start < s.start {
			s.start = o.start
		}
		s.failing = true
		s.failures++
		s.last = o.kind
	}
	for slot, s := range st {
		if s.failing {
			out = append(out, Outage{Slot: slot, Start: l.Time(s.start), End: to, Open: true, Failures: s.failures, Last: s.last})
		}
	}
	slices.SortFunc(out, func(a, b Outage) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return a.Slot - b.Slot
	})
	return out
}

// Stuck returns the slots among outages that kept failing for longer than
// limit after healthy, the instant the cluster reported itself ok again.
func Stuck(outages []Outage, healthy time.Time, limit time.Duration) []int {
	var out []int
	for _, o := range outages {
		start := o.Start
		if start.Before(healthy) {
			start = healthy
		}
		if o.End.Sub(start) > limit && !slices.Contains(out, o.Slot) {
			out = append(out, o.Slot)
		}
	}
	slices.Sort(out)
	return out
}

// Counts are the calls of an interval by outcome.
type Counts struct {
	Calls   int            `json:"calls"`
	OK      int            `json:"ok"`
	Allowed int            `json:"allowed"`
	Denied  int            `json:"denied"`
	Errors  map[string]int `json:"errors,omitempty"` // by Kind name
	// Overran counts calls that returned more than overrunSlack after
	// their deadline: the store did not honour the context.
	Overran int `json:"overran,omitempty"`
	// MaxLatencyMS is the longest call.
	MaxLatencyMS int64 `json:"max_latency_ms"`
	// Skipped counts calls not started because a concurrency bound was
	// reached.
	Skipped int `json:"skipped,omitempty"`
}

// overrunSlack is how late after its deadline a call may return before it
// counts as overrunning it.
const overrunSlack = 50 * time.Millisecond

func (c *Counts) add(o op, timeout time.Duration) {
	c.Calls++
	lat := o.end - o.start
	c.MaxLatencyMS = max(c.MaxLatencyMS, lat.Milliseconds())
	if lat > timeout+overrunSlack {
		c.Overran++
	}
	switch {
	case o.kind != OK:
		if c.Errors == nil {
			c.Errors = map[string]int{}
		}
		c.Errors[o.kind.String()]++
	case o.allowed:
		c.OK++
		c.Allowed++
	default:
		c.OK++
		c.Denied++
	}
}

// Failed is the number of calls that returned an error.
func (c Counts) Failed() int { return c.Calls - c.OK }

// Window counts the calls that ended in [from, to], and those skipped then.
func (l *Load) Window(from, to time.Time) Counts {
	ops := l.records()
	f, t := l.At(from), l.At(to)
	var c Counts
	for _, o := range ops[firstEndingAt(ops, f):] {
		if o.end > t {
			break
		}
		c.add(o, l.cfg.OpTimeout)
	}
	l.mu.Lock()
	for _, d := range l.skips {
		if d >= f && d <= t {
			c.Skipped++
		}
	}
	l.mu.Unlock()
	return c
}

// Bucket is one step of a timeline: the calls that ended in [At, At+width),
// and the calls skipped then because their limiter had Concurrency calls in
// flight.
type Bucket struct {
	AtMS int64 `json:"t_ms"`
	Counts
}

// Timeline returns the calls in buckets of Config.Bucket from from to to,
// both as offsets from the run's beginning.
func (l *Load) Timeline(from, to time.Time) []Bucket {
	ops := l.records()
	w := l.cfg.Bucket
	f := l.At(from).Truncate(w)
	t := l.At(to)
	if t < f {
		return nil
	}
	out := make([]Bucket, int((t-f)/w)+1)
	for i := range out {
		out[i].AtMS = (f + time.Duration(i)*w).Milliseconds()
	}
	for _, o := range ops[firstEndingAt(ops, f):] {
		if o.end > t {
			break
		}
		out[(o.end-f)/w].add(o, l.cfg.OpTimeout)
	}
	l.mu.Lock()
	skips := l.skips
	l.mu.Unlock()
	for _, d := range skips {
		if d >= f && d <= t {
			out[(d-f)/w].Skipped++
		}
	}
	return out
}

// FormatTimeline renders buckets as text lines for test logs: time, calls,
// successes, the longest call, overruns, skips and errors by kind.
func FormatTimeline(bs []Bucket) string {
	var b strings.Builder
	for _, x := range bs {
		fmt.Fprintf(&b, "  %8.1fs calls %4d ok %4d max %4dms", float64(x.AtMS)/1000, x.Calls, x.OK, x.MaxLatencyMS)
		if x.Overran > 0 {
			fmt.Fprintf(&b, " overran %d", x.Overran)
		}
		if x.Skipped > 0 {
			fmt.Fprintf(&b, " skipped %d", x.Skipped)
		}
		kinds := make([]string, 0, len(x.Errors))
		for k := range x.Errors {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		for _, k := range kinds {
			fmt.Fprintf(&b, " %s %d", k, x.Errors[k])
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Accounting compares, for one key set, what callers were told with what
// the store holds. Units are cost units.
type Accounting struct {
	KeySet string `json:"key_set"`
	Keys   int    `json:"keys"`
	// Acked is the units of allowed replies; Errored, the units of calls
	// that failed, which the store may or may not have recorded.
	Acked   int64 `json:"acked"`
	Errored int64 `json:"errored"`
	// Used is the units the store holds now (Peek), summed.
	Used int64 `json:"used"`
	// Lost is the units acknowledged but no longer held: Σ max(0, acked -
	// used) per key, over LostKeys keys.
	Lost     int64 `json:"lost"`
	LostKeys int   `json:"lost_keys"`
	// Unexplained is the units held beyond acknowledged plus failed calls:
	// Σ max(0, used - acked - errored), which only a call recorded twice
	// explains.
	Unexplained int64 `json:"unexplained"`
	// OverLimit is the units allowed beyond the limit: Σ max(0, acked -
	// limit) per key, over OverKeys keys.
	OverLimit int64 `json:"over_limit"`
	OverKeys  int   `json:"over_keys"`
	// Unchecked is the number of keys that Peek failed on.
	Unchecked int `json:"unchecked"`
}

// checkConcurrency is how many Peeks Check runs at once.
const checkConcurrency = 32

// Check peeks every key of every key set (through the limiters in turn,
// retrying a failed Peek a few times) and returns one Accounting per key
// set. Call it once the load has stopped.
func (l *Load) Check(ctx context.Context) ([]Accounting, error) {
	l.mu.Lock()
	keys := slices.Clone(l.keys)
	sets := slices.Clone(l.sets)
	l.mu.Unlock()
	used := make([]int64, len(keys))
	failed := make([]bool, len(keys))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := range checkConcurrency {
		wg.Go(func() {
			for i := range next {
				used[i], failed[i] = l.peek(ctx, w, keys[i].name)
			}
		})
	}
	for i := range keys {
		next <- i
	}
	close(next)
	wg.Wait()
	out := make([]Accounting, len(sets))
	for i, s := range sets {
		out[i].KeySet = s.spec.Prefix
	}
	for i, k := range keys {
		a := &out[k.set]
		a.Keys++
		acked, errored := k.acked.Load(), k.errored.Load()
		a.Acked += acked
		a.Errored += errored
		if over := acked - l.cfg.Limit.Units; over > 0 {
			a.OverLimit += over
			a.OverKeys++
		}
		if failed[i] {
			a.Unchecked++
			continue
		}
		a.Used += used[i]
		if lost := acked - used[i]; lost > 0 {
			a.Lost += lost
			a.LostKeys++
		}
		a.Unexplained += max(0, used[i]-acked-errored)
	}
	var err error
	for _, a := range out {
		if a.Unchecked > 0 {
			err = errors.Join(err, fmt.Errorf("chaos: key set %q: Peek failed on %d keys", a.KeySet, a.Unchecked))
		}
	}
	return out, err
}

// peek returns the units key holds, trying up to 5 times.
func (l *Load) peek(ctx context.Context, w int, name string) (int64, bool) {
	for try := range 5 {
		lim := l.cfg.Limiters[(w+try)%len(l.cfg.Limiters)]
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		res, err := lim.Peek(cctx, name, l.cfg.Limit)
		cancel()
		if err == nil {
			return res.Used, false
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, true
}
