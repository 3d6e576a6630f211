// Package memory is an in-process tollgate.Store: state lives in this
// process's memory, so it limits one process only. It implements exactly the
// semantics of store/redis and is the zero-setup default: state per key,
// algorithm and window, the bounded sliding log (tollgate.Options.
// MaxLogEntries), at most tollgate.MaxDedupeIDs request ids per key. As in
// Redis, reads change nothing; state that has become empty is dropped at
// the key's next write, or by the sweeper (Options.SweepInterval), as Redis
// drops expired keys.
//
// # Bounded memory
//
// The store holds at most Options.MaxKeys keys (DefaultMaxKeys), so a
// client that sends ever new keys cannot exhaust the process's memory. At
// the cap, a new key first drops the keys whose usage has gone, then evicts
// live keys, those nearest their reset first, and reports them to
// Options.Observer. An eviction forgets usage: an evicted key starts again
// from 0, so the store can only under-count, never over-count, and does so
// for the keys that were nearest their reset (whose usage was about to go
// anyway).
package memory

import (
	"cmp"
	"context"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/tollgate/tollgate"
)

// DefaultSweepInterval is how often idle keys are evicted when
// Options.SweepInterval is 0.
const DefaultSweepInterval = time.Minute

// DefaultMaxKeys is the key cap when Options.MaxKeys is 0: half a million
// keys, which hold the store under 350 MiB of heap when each key has one
// limit and a short log. Measured with TestMemoryPerKey (go test -run
// MemoryPerKey -v ./store/memory): a key with one sliding-log limit and one
// entry takes about 230 bytes with a 64-byte key (110 MiB at the cap) and
// 680 bytes with a key of the longest, tollgate.DefaultMaxKeyLen = 512
// bytes (325 MiB). A key's sliding log adds 16 bytes per entry (at most
// tollgate.Options.MaxLogEntries), and each more limit of a key its own
// state, so a store of keys with long logs takes more: lower the cap for
// them.
const DefaultMaxKeys = 500_000

// evictFraction: a shard at its cap evicts 1/evictFraction of its keys at
// once, so that the scan an eviction costs is paid once per that many new
// keys.
const evictFraction = 16

const shardCount = 64

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Now is the store's clock, used for requests that carry no time of
	// their own (tollgate.Options.Now unset). Nil means time.Now.
	Now func() time.Time
	// SweepInterval is how often a background goroutine evicts keys whose
	// state has become empty (every unit has left its window). 0 means
	// DefaultSweepInterval.
	SweepInterval time.Duration
	// MaxKeys caps the keys held, so that a client sending ever new keys
	// cannot exhaust memory. A new key past the cap first drops the keys
	// whose state has become empty, then, if that is not enough, evicts
	// live keys: those closest to becoming empty (nearest their reset)
	// first, 1/16 of a shard at a time (the keys are spread over 64
	// shards, each capped at MaxKeys/64, rounded up). An evicted key's
	// usage is forgotten: the store then under-counts it, never
	// over-counts, and only for the keys nearest their reset. 0 means
	// DefaultMaxKeys; negative, no cap.
	MaxKeys int
	// Observer, if not nil, is told of the live keys evicted at the cap
	// (not of empty ones dropped). *metrics.Metrics implements it.
	Observer Observer
}

// Observer is told of evictions, for metrics. Evicted must be safe for
// concurrent use and fast.
type Observer interface {
	// Evicted reports n keys with live usage forgotten at the key cap.
	Evicted(n int)
}

// Store is an in-memory tollgate.Store, safe for concurrent use. Keys are
// spread over shards, each with its own lock, so calls on different keys
// rarely contend. Call Close to stop its sweeper.
type Store struct {
	now      func() time.Time
	perShard int // the key cap of each shard; 0: none
	observer Observer
	seed     maphash.Seed
	shards   [shardCount]shard
	started  time.Time // origin of the shards' monotonic readings

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type shard struct {
	mu   sync.Mutex
	keys map[string]*keyState
	// The time of the shard's latest request and when (monotonic ns since
	// Store.started) it came: Sweep's notion of now is that time advanced by
	// the real time since, so that a fake clock in the past or future never
	// makes live state look idle.
	lastReq, lastReal int64
	_                 [32]byte // 64 bytes, a cache line per shard: no false sharing
}

// keyState is everything kept of one Request.Key: a state per algorithm and
// window, and the request ids of its recent consumes.
type keyState struct {
	limits []limitState
	ids    map[string]int64 // "cost:id" → when allowed
	idsEnd int64            // µs: no id counts from then on
}

type limitState struct {
	alg    tollgate.Algorithm
	window int64 // µs
	state  state
}

// New returns a Store and starts its sweeper.
func New(opts Options) *Store {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	switch {
	case opts.MaxKeys == 0:
		opts.MaxKeys = DefaultMaxKeys
	case opts.MaxKeys < 0:
		opts.MaxKeys = 0
	}
	s := &Store{
		perShard: (opts.MaxKeys + shardCount - 1) / shardCount,
		observer: opts.Observer,
		now:      opts.Now,
		seed:     maphash.MakeSeed(),
		started:  time.Now(),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].keys = make(map[string]*keyState)
	}
	go s.sweepLoop(opts.SweepInterval)
	return s
}

// Do implements tollgate.Store.
func (s *Store) Do(ctx context.Context, req tollgate.Request) (tollgate.Decision, error) {
	if err := ctx.Err(); err != nil {
		return tollgate.Decision{}, err
	}
	now := req.Now
	if now.IsZero() {
		now = s.now()
	}
	nowUS := now.UnixMicro()
	sh := s.shard(req.Key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.lastReq, sh.lastReal = nowUS, int64(time.Since(s.started))
	k := sh.keys[req.Key]
	if k == nil {
		k = &keyState{}
	}
	d, wrote := k.do(req, nowUS)
	switch {
	case !wrote:
		// Reads leave everything as it was, even state that has become
		// empty, as the Redis script does: a clock that goes back sees it.
	case k.idleAt(nowUS) <= nowUS:
		delete(sh.keys, req.Key)
	case sh.keys[req.Key] == nil:
		if s.perShard > 0 && len(sh.keys) >= s.perShard {
			if n := sh.evict(s.perShard, nowUS); n > 0 && s.observer != nil {
				s.observer.Evicted(n)
			}
		}
		sh.keys[req.Key] = k
	}
	return d, nil
}

// evict makes room in a shard at its cap, at now: it drops the keys whose
// state has become empty and, if fewer than cap/evictFraction went, evicts
// the live keys nearest to becoming empty (lowest idleAt) until that many
// are free. It returns the number of live keys evicted. sh.mu must be held.
func (sh *shard) evict(limit int, now int64) int {
	target := limit - max(1, limit/evictFraction)
	type cand struct {
		key    string
		idleAt int64
	}
	live := make([]cand, 0, len(sh.keys))
	for key, k := range sh.keys {
		if at := k.idleAt(now); at <= now {
			delete(sh.keys, key)
		} else {
			live = append(live, cand{key, at})
		}
	}
	n := len(sh.keys) - target
	if n <= 0 {
		return 0
	}
	slices.SortFunc(live, func(a, b cand) int { return cmp.Compare(a.idleAt, b.idleAt) })
	for _, c := range live[:n] {
		delete(sh.keys, c.key)
	}
	return n
}

// do applies req at now, the steps of the Redis script in its order, and
// reports whether it wrote.
func (k *keyState) do(req tollgate.Request, now int64) (tollgate.Decision, bool) {
	op := req.Op
	repeat := false
	m := strconv.FormatInt(req.Cost, 10) + ":" + req.ID
	if op == tollgate.OpConsume && req.ID != "" {
		at, ok := k.ids[m]
		if repeat = ok && at > now-req.DedupeWindow.Microseconds(); repeat {
			op = tollgate.OpPeek // answered with the figures of a peek, as allowed
		}
	}
	check := req.Cost
	if op != tollgate.OpConsume {
		check = 1
	}
	states := make([]state, len(req.Limits))
	for i, l := range req.Limits {
		states[i] = k.state(l, op == tollgate.OpPeek)
	}
	d := tollgate.Decision{Allowed: true, Results: make([]tollgate.Result, len(req.Limits))}
	view := func() {
		d.Allowed, d.RetryAfter = true, 0
		for i, l := range req.Limits {
			r := states[i].view(check, l.Units, l.Window.Microseconds(), now)
			d.Results[i] = r
			if !r.Allowed {
				d.Allowed = false
				d.RetryAfter = max(d.RetryAfter, r.RetryAfter)
			}
		}
	}
	view()
	recorded := op == tollgate.OpConsume && d.Allowed
	switch {
	case recorded:
		for i, l := range req.Limits {
			states[i].consume(req.Cost, l.Units, l.Window.Microseconds(), now, req.MaxLogEntries)
		}
		if req.ID != "" {
			k.remember(m, now, req.DedupeWindow.Microseconds())
		}
		view() // the figures as recorded; allowed below
	case op == tollgate.OpRefund:
		for i, l := range req.Limits {
			states[i].refund(req.Cost, l.Units, l.Window.Microseconds(), now)
		}
		k.ids = nil // a refund ends deduplication
		view()
	}
	wrote := recorded || op == tollgate.OpRefund
	if wrote {
		k.drop(now)
	}
	if repeat || recorded {
		// Allowed (and recorded, unless a repeat): no limit advises waiting.
		d.Allowed, d.RetryAfter = true, 0
		for i := range d.Results {
			d.Results[i].Allowed, d.Results[i].RetryAfter = true, 0
		}
	}
	return d, wrote
}

// state returns the state of l, adding an empty one unless read only.
func (k *keyState) state(l tollgate.Limit, read bool) state {
	w := l.Window.Microseconds()
	for _, ls := range k.limits {
		if ls.alg == l.Algorithm && ls.window == w {
			return ls.state
		}
	}
	st := newState(l.Algorithm)
	if !read {
		k.limits = append(k.limits, limitState{alg: l.Algorithm, window: w, state: st})
	}
	return st
}

// remember records the id member m of a consume allowed at now, forgetting
// ids older than dedupe and, past MaxDedupeIDs, the oldest (the Redis
// script's ZREMRANGEBYRANK: lowest time, then lowest member).
func (k *keyState) remember(m string, now, dedupe int64) {
	if k.ids == nil {
		k.ids = make(map[string]int64)
	}
	k.ids[m] = now
	for id, at := range k.ids {
		if at <= now-dedupe {
			delete(k.ids, id)
		}
	}
	for len(k.ids) > tollgate.MaxDedupeIDs {
		var oldest string
		first := true
		for id, at := range k.ids {
			if o := k.ids[oldest]; first || at < o || (at == o && id < oldest) {
				oldest, first = id, false
			}
		}
		delete(k.ids, oldest)
	}
	k.idsEnd = now + dedupe
}

// drop forgets the states that have become empty by now.
func (k *keyState) drop(now int64) {
	k.limits = slices.DeleteFunc(k.limits, func(ls limitState) bool {
		return ls.state.idleAt(ls.window) <= now
	})
}

// idleAt is when the whole key equals an empty one.
func (k *keyState) idleAt(now int64) int64 {
	end := int64(math.MinInt64)
	if len(k.ids) > 0 {
		end = k.idsEnd
	}
	for _, ls := range k.limits {
		end = max(end, ls.state.idleAt(ls.window))
	}
	return end
}

// Reset implements tollgate.Store.
func (s *Store) Reset(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	delete(sh.keys, key)
	return nil
}

// Keys returns the number of keys held.
func (s *Store) Keys() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.keys)
		sh.mu.Unlock()
	}
	return n
}

// Len returns the number of states held: one per key, algorithm and window
// in use.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, k := range sh.keys {
			n += len(k.limits)
		}
		sh.mu.Unlock()
	}
	return n
}

// Close stops the sweeper. The Store keeps answering calls afterwards, but
// idle keys are no longer evicted.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

func (s *Store) shard(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)%shardCount]
}

func (s *Store) sweepLoop(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// Sweep evicts every key whose state has become empty. The sweeper calls it
// periodically; it is exported for callers that want memory back at once.
func (s *Store) Sweep() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		cutoff := sh.lastReq + time.Duration(int64(time.Since(s.started))-sh.lastReal).Microseconds()
		for key, k := range sh.keys {
			if k.idleAt(cutoff) <= cutoff {
				delete(sh.keys, key)
			}
		}
		sh.mu.Unlock()
	}
}
