// Package chaos drives Tollgate limiters under steady load while faults are
// injected into their store, and measures what the callers saw: a timeline
// of calls and errors by kind, per-slot outages and recovery times, and
// whether any key was allowed more than its limit or lost recorded units.
//
// A Load spreads Consume calls at a fixed rate over several limiters (each
// with its own client) and over a key set: cold keys visited in turn, so
// that every key, and with about a thousand keys every master's slots, is
// exercised every fraction of a second, plus a few hot keys that soon reach
// their limit. Calls are bounded in count, rate, concurrency and time. Every
// call is recorded (start, end, key, slot, cost, outcome), so that recovery
// can be computed exactly afterwards; Mark places fault markers on the same
// clock. Pause and Resume make idle periods: a client that heals only under
// load is not healed.
//
// The fault injection itself is the caller's: the chaos tests drive a real
// cluster through internal/testcluster, and the package knows nothing of
// Redis beyond slot hashing (Slot). Report renders the run as JSON.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate"
)

// Defaults for zero Config and KeySpec fields.
const (
	DefaultRate            = 4000                   // calls per second, all limiters together
	DefaultConcurrency     = 512                    // calls in flight per limiter
	DefaultSlotConcurrency = 4                      // calls in flight per hash slot
	DefaultOpTimeout       = 500 * time.Millisecond // per call
	DefaultMaxOps          = 1_000_000
	DefaultMaxDuration     = 10 * time.Minute
	DefaultBucket          = 100 * time.Millisecond
	DefaultMaxCost         = 3
	DefaultColdKeys        = 1000
	DefaultHotKeys         = 10
	// HotShare is the share of calls that go to hot and pinned keys.
	HotShare = 0.1
	// PinKeys is how many hot keys KeySpec.Pin adds per slot.
	PinKeys = 4
)

// DefaultLimit is the limit of every key when Config.Limit is zero: 50 units
// per hour, sliding log. An hour is longer than any run, so every unit a key
// was allowed still counts at the end and accounting is exact.
var DefaultLimit = tollgate.Limit{Units: 50, Window: time.Hour, Algorithm: tollgate.SlidingLog}

// Config configures a Load.
type Config struct {
	// Limiters share the calls in turn; give each its own client so that
	// each keeps its own connections and topology. Required.
	Limiters []*tollgate.Limiter
	// Slot returns the hash slot of a limiter key; for store/redis,
	// func(k string) int { return chaos.Slot(store.Key(k, alg)) }. Required.
	Slot func(key string) int
	// Limit applies to every key; zero means DefaultLimit. Its window must
	// outlast the run for Check to be exact.
	Limit tollgate.Limit
	// MaxCost: each call costs 1 to MaxCost units, uniformly; zero means
	// DefaultMaxCost.
	MaxCost int64
	// Rate is how many calls start per second, all limiters together; zero
	// means DefaultRate.
	Rate float64
	// Concurrency bounds the calls in flight per limiter, and
	// SlotConcurrency those per hash slot; a call due while either is at
	// its bound is skipped and counted. The slot bound keeps calls that
	// hang on one node (past their deadline, if the store does not honour
	// it) from starving the others. Zero means DefaultConcurrency and
	// DefaultSlotConcurrency.
	Concurrency     int
	SlotConcurrency int
	// OpTimeout bounds each call; zero means DefaultOpTimeout.
	OpTimeout time.Duration
	// MaxOps bounds the calls of the whole run; the load stops issuing at
	// it. Zero means DefaultMaxOps.
	MaxOps int
	// MaxDuration bounds the run; the load stops issuing after it. Zero
	// means DefaultMaxDuration.
	MaxDuration time.Duration
	// Bucket is the timeline's resolution; zero means DefaultBucket.
	Bucket time.Duration
}

// KeySpec describes a key set. Keys are named Prefix + "c<i>" (cold) and
// Prefix + "h<i>" (hot); pinned keys are hot keys chosen to hash to given
// slots.
type KeySpec struct {
	// Prefix starts every key name; it isolates key sets and runs.
	Prefix string
	// Cold is the number of keys visited in turn by (1-HotShare) of the
	// calls; zero means DefaultColdKeys.
	Cold int
	// Hot is the number of keys sharing HotShare of the calls with the
	// pinned keys, so that they reach their limit within seconds; zero
	// means DefaultHotKeys.
	Hot int
	// Pin adds PinKeys hot keys in each of these slots, such as a slot
	// about to be migrated.
	Pin []int
}

// key is one limiter key and what callers were told about it.
type key struct {
	id   uint32 // index in Load.keys
	name string
	slot int
	set  int // index in Load.sets

	acked   atomic.Int64 // units of allowed replies
	errored atomic.Int64 // units of failed calls: applied or not, unknown
}

// keySet is a KeySpec's keys. Cold keys are visited in turn.
type keySet struct {
	index    int
	spec     KeySpec
	cold     []*key
	hot      []*key
	slots    []int // sorted, distinct
	nextCold atomic.Uint64
}

// op is the record of one call. Times are offsets from Load.begin; end is
// taken under Load.mu, so records are appended in end order.
type op struct {
	start, end time.Duration
	key        uint32
	slot       uint16
	cost       uint8
	limiter    uint8
	kind       Kind
	allowed    bool
}

// Marker is a named instant of a run, such as a fault's injection.
type Marker struct {
	At     time.Duration
	Name   string
	Detail string
}

// Load is a running load. Its methods are safe for concurrent use.
type Load struct {
	cfg   Config
	begin time.Time
	opCtx context.Context // calls: not cancelled by Stop, bounded by OpTimeout

	stop     context.CancelFunc
	done     chan struct{} // closed when the dispatcher has returned
	wg       sync.WaitGroup
	inflight []atomic.Int64 // per limiter
	bySlot   [SlotCount]atomic.Int32

	set atomic.Pointer[keySet]

	mu       sync.Mutex
	paused   bool
	keys     []*key
	sets     []*keySet
	ops      []op
	markers  []Marker
	launched int
	skipped  int
	skips    []time.Duration   // when calls were skipped, up to MaxOps
	samples  map[Kind][]string // first distinct messages per kind
	lastErr  map[int]string    // slot → last error message
	exhaust  string            // why the dispatcher stopped early
}

// maxSamples is how many distinct messages are kept per error kind.
const maxSamples = 8

// maxSkips bounds the record of skipped calls.
const maxSkips = 1 << 20

// Start checks cfg, builds the first key set and starts issuing calls. The
// load runs until Stop, MaxOps or MaxDuration, or until ctx ends.
func Start(ctx context.Context, cfg Config, keys KeySpec) (*Load, error) {
	switch {
	case len(cfg.Limiters) == 0:
		return nil, errors.New("chaos: no limiter")
	case len(cfg.Limiters) > 255:
		return nil, errors.New("chaos: more than 255 limiters")
	case cfg.Slot == nil:
		return nil, errors.New("chaos: no Slot function")
	}
	if cfg.Limit.IsZero() {
		cfg.Limit = DefaultLimit
	}
	if err := cfg.Limit.Validate(); err != nil {
		return nil, err
	}
	cfg.MaxCost = cmp0(cfg.MaxCost, DefaultMaxCost)
	if cfg.MaxCost < 1 || cfg.MaxCost > min(cfg.Limit.Units, 255) {
		return nil, fmt.Errorf("chaos: MaxCost %d outside 1..min(limit, 255)", cfg.MaxCost)
	}
	cfg.Rate = cmp0(cfg.Rate, DefaultRate)
	cfg.Concurrency = cmp0(cfg.Concurrency, DefaultConcurrency)
	cfg.SlotConcurrency = cmp0(cfg.SlotConcurrency, DefaultSlotConcurrency)
	cfg.OpTimeout = cmp0(cfg.OpTimeout, DefaultOpTimeout)
	cfg.MaxOps = cmp0(cfg.MaxOps, DefaultMaxOps)
	cfg.MaxDuration = cmp0(cfg.MaxDuration, DefaultMaxDuration)
	cfg.Bucket = cmp0(cfg.Bucket, DefaultBucket)
	if cfg.Rate < 0 || cfg.Concurrency < 0 || cfg.SlotConcurrency < 0 || cfg.OpTimeout < 0 || cfg.MaxOps < 0 || cfg.MaxDuration < 0 || cfg.Bucket < 0 {
		return nil, errors.New("chaos: negative Config field")
	}
	l := &Load{
		cfg:      cfg,
		opCtx:    context.WithoutCancel(ctx),
		done:     make(chan struct{}),
		inflight: make([]atomic.Int64, len(cfg.Limiters)),
		samples:  map[Kind][]string{},
		lastErr:  map[int]string{},
	}
	if _, err := l.UseKeys(keys); err != nil {
		return nil, err
	}
	ctx, l.stop = context.WithCancel(ctx)
	l.begin = time.Now()
	l.Mark("start", keys.Prefix)
	go l.dispatch(ctx)
	return l, nil
}

func cmp0[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// UseKeys switches the load to a new key set and returns its slots, sorted.
// Calls in flight finish on the old set; its accounting is kept for Check.
func (l *Load) UseKeys(spec KeySpec) ([]int, error) {
	spec.Cold = cmp0(spec.Cold, DefaultColdKeys)
	spec.Hot = cmp0(spec.Hot, DefaultHotKeys)
	if spec.Cold < 0 || spec.Hot < 0 {
		return nil, errors.New("chaos: negative key count")
	}
	names := make([]string, 0, spec.Cold+spec.Hot+len(spec.Pin)*PinKeys)
	for i := range spec.Cold {
		names = append(names, spec.Prefix+"c"+strconv.Itoa(i))
	}
	for i := range spec.Hot {
		names = append(names, spec.Prefix+"h"+strconv.Itoa(i))
	}
	for _, slot := range spec.Pin {
		pinned, err := keysInSlot(spec.Prefix+"p"+strconv.Itoa(slot)+"-", slot, PinKeys, l.cfg.Slot)
		if err != nil {
			return nil, err
		}
		names = append(names, pinned...)
	}
	if len(names) == 0 {
		return nil, errors.New("chaos: empty key set")
	}
	slotOf := make([]int, len(names))
	for i, n := range names {
		if slotOf[i] = l.cfg.Slot(n); slotOf[i] < 0 || slotOf[i] >= SlotCount {
			return nil, fmt.Errorf("chaos: slot %d of key %q out of range", slotOf[i], n)
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.sets {
		if s.spec.Prefix == spec.Prefix {
			return nil, fmt.Errorf("chaos: key prefix %q used twice", spec.Prefix)
		}
	}
	ks := &keySet{index: len(l.sets), spec: spec}
	seen := map[int]bool{}
	for i, n := range names {
		k := &key{id: uint32(len(l.keys)), name: n, slot: slotOf[i], set: ks.index}
		l.keys = append(l.keys, k)
		if i < spec.Cold {
			ks.cold = append(ks.cold, k)
		} else {
			ks.hot = append(ks.hot, k)
		}
		if !seen[k.slot] {
			seen[k.slot] = true
			ks.slots = append(ks.slots, k.slot)
		}
	}
	slices.Sort(ks.slots)
	l.sets = append(l.sets, ks)
	l.set.Store(ks)
	return slices.Clone(ks.slots), nil
}

// keysInSlot finds n key names starting with prefix whose slot is slot.
// About one name in 16384 fits, so the search is bounded accordingly.
func keysInSlot(prefix string, slot, n int, slotOf func(string) int) ([]string, error) {
	var out []string
	for i := 0; len(out) < n; i++ {
		if i > 1000*SlotCount {
			return nil, fmt.Errorf("chaos: no key with prefix %q hashes to slot %d", prefix, slot)
		}
		name := prefix + strconv.Itoa(i)
		if slotOf(name) == slot {
			out = append(out, name)
		}
	}
	return out, nil
}

// Slots returns the slots of the current key set, sorted.
func (l *Load) Slots() []int { return slices.Clone(l.set.Load().slots) }

// Keys returns the names of the current key set's keys whose slot is slot.
func (l *Load) Keys(slot int) []string {
	ks := l.set.Load()
	var out []string
	for _, k := range append(slices.Clone(ks.cold), ks.hot...) {
		if k.slot == slot {
			out = append(out, k.name)
		}
	}
	return out
}

// since is the offset of now from the run's beginning.
func (l *Load) since() time.Duration { return time.Since(l.begin) }

// At converts an instant to an offset from the run's beginning.
func (l *Load) At(t time.Time) time.Duration { return t.Sub(l.begin) }

// Time converts an offset from the run's beginning to an instant.
func (l *Load) Time(d time.Duration) time.Time { return l.begin.Add(d) }

// Mark records a named instant and returns it.
func (l *Load) Mark(name, detail string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.since()
	l.markers = append(l.markers, Marker{At: d, Name: name, Detail: detail})
	return l.begin.Add(d)
}

// dispatchEvery is how often the dispatcher starts the calls that are due.
const dispatchEvery = 5 * time.Millisecond

// dispatch starts calls at cfg.Rate until ctx ends or a bound is reached.
func (l *Load) dispatch(ctx context.Context) {
	defer close(l.done)
	tick := time.NewTicker(dispatchEvery)
	defer tick.Stop()
	deadline := time.NewTimer(l.cfg.MaxDuration)
	defer deadline.Stop()
	var owed float64 // calls due but not started
	last := time.Now()
	next := 0 // limiter of the next call
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			l.exhausted("MaxDuration reached")
			return
		case now := <-tick.C:
			dt := now.Sub(last).Seconds()
			last = now
			l.mu.Lock()
			paused := l.paused
			l.mu.Unlock()
			if paused {
				owed = 0
				continue
			}
			// A late tick starts at most one tick and a half of calls, so a
			// stalled dispatcher never bursts.
			owed = min(owed+dt*l.cfg.Rate, 1.5*dispatchEvery.Seconds()*l.cfg.Rate+1)
			for ; owed >= 1; owed-- {
				if !l.launch(next) {
					return
				}
				next = (next + 1) % len(l.cfg.Limiters)
			}
		}
	}
}

func (l *Load) exhausted(why string) {
	l.mu.Lock()
	l.exhaust = why
	l.mu.Unlock()
	l.Mark("exhausted", why)
}

// launch starts one call on limiter li, or counts it skipped when li or the
// key's slot is at its concurrency bound. It returns false once MaxOps calls
// were started.
func (l *Load) launch(li int) bool {
	ks := l.set.Load()
	var k *key
	if len(ks.hot) > 0 && (len(ks.cold) == 0 || rand.Float64() < HotShare) {
		k = ks.hot[rand.IntN(len(ks.hot))]
	} else {
		k = ks.cold[ks.nextCold.Add(1)%uint64(len(ks.cold))]
	}
	slot := &l.bySlot[k.slot]
	l.mu.Lock()
	if l.launched >= l.cfg.MaxOps {
		l.mu.Unlock()
		l.exhausted("MaxOps reached")
		return false
	}
	if l.inflight[li].Load() >= int64(l.cfg.Concurrency) || slot.Load() >= int32(l.cfg.SlotConcurrency) {
		l.skipped++
		if len(l.skips) < maxSkips {
			l.skips = append(l.skips, l.since())
		}
		l.mu.Unlock()
		return true
	}
	l.launched++
	l.inflight[li].Add(1)
	slot.Add(1)
	l.mu.Unlock()
	cost := 1 + rand.Int64N(l.cfg.MaxCost)
	l.wg.Go(func() {
		defer l.inflight[li].Add(-1)
		defer slot.Add(-1)
		l.call(li, k, cost)
	})
	return true
}

// call runs one Consume and records it.
func (l *Load) call(li int, k *key, cost int64) {
	ctx, cancel := context.WithTimeout(l.opCtx, l.cfg.OpTimeout)
	start := l.since()
	res, err := l.cfg.Limiters[li].Consume(ctx, k.name, cost, l.cfg.Limit)
	cancel()
	kind := Classify(err)
	switch {
	case err != nil:
		k.errored.Add(cost)
	case res.Allowed:
		k.acked.Add(cost)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, op{
		start: start, end: l.since(), key: k.id, slot: uint16(k.slot),
		cost: uint8(cost), limiter: uint8(li), kind: kind, allowed: err == nil && res.Allowed,
	})
	if err != nil {
		msg := err.Error()
		l.lastErr[k.slot] = msg
		if s := l.samples[kind]; len(s) < maxSamples && !slices.Contains(s, msg) {
			l.samples[kind] = append(s, msg)
		}
	}
}

// Pause stops starting calls and waits, at most OpTimeout and a second, for
// the calls in flight to finish, so that the clients are idle.
func (l *Load) Pause() time.Time {
	l.mu.Lock()
	l.paused = true
	l.mu.Unlock()
	deadline := time.Now().Add(l.cfg.OpTimeout + time.Second)
	for time.Now().Before(deadline) && l.inFlight() > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	return l.Mark("pause", "")
}

// Resume starts calls again and returns the instant it did.
func (l *Load) Resume() time.Time {
	t := l.Mark("resume", "")
	l.mu.Lock()
	l.paused = false
	l.mu.Unlock()
	return t
}

func (l *Load) inFlight() int64 {
	var n int64
	for i := range l.inflight {
		n += l.inflight[i].Load()
	}
	return n
}

// Stop stops starting calls and waits for those in flight, which OpTimeout
// bounds. It is idempotent.
func (l *Load) Stop() {
	l.stop()
	<-l.done
	l.wg.Wait()
}

// Exhausted reports why the load stopped before Stop, or "" if it did not.
func (l *Load) Exhausted() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.exhaust
}

// records returns the calls recorded so far, in end order. The slice must
// not be modified; records are never changed once appended.
func (l *Load) records() []op {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ops[:len(l.ops):len(l.ops)]
}

// firstEndingAt returns the index of the first record that ends at or after
// d.
func firstEndingAt(ops []op, d time.Duration) int {
	return sort.Search(len(ops), func(i int) bool { return ops[i].end >= d })
}

// LastError returns the last error message of a call on slot, or "".
func (l *Load) LastError(slot int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr[slot]
}
