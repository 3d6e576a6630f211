// Package overlimit answers repeated denials in process: a tollgate.Store
// that wraps another and, when it denies a request with a RetryAfter,
// answers the same denial itself until then, sparing the store a round trip
// per request from a client that keeps knocking.
//
// A key over its limit stays over it until its RetryAfter has passed, unless
// units are given back, so until then a Consume (or Peek) of the same key
// and Limit with at least the denied cost is denied again. The Store keeps
// each such denial, keyed by the key and the whole Limit (units, window and
// algorithm), in a bounded table that forgets the least recently used entry
// when full (per shard of the table; see Store). A request it answers gets Allowed false, the Limit, Used and
// Remaining of the remembered denial, and RetryAfter and ResetAfter reduced
// by the time since. For a request of a larger cost than the remembered one
// the RetryAfter is a lower bound: its retry finds out the rest from the
// store. A smaller cost always goes to the store, as it may fit.
//
// Refund and Reset of a key forget its entries, and denials that were in
// flight meanwhile are not remembered.
//
// A Consume with a request id (Request.ID, from tollgate.WithRequestID)
// always goes to the store, as the store answers a repeat of an allowed
// request Allowed however far over the limit the key is; its denial is
// remembered for the requests that follow.
//
// # Caveat: other instances
//
// The table is local. When several processes share one store (the point of
// Redis), a Refund or Reset through another process does not reach this
// one's table, which keeps denying the key until the remembered RetryAfter
// (or Options.MaxAge) is up, although the store would now allow it. Set
// MaxAge to bound that staleness. Nothing is ever allowed that the store
// would deny: the table only holds denials.
//
// # Time
//
// A denial is remembered from the instant the request was sent to the store
// (Request.Now when the Limiter sets it, else Options.Now), which is no
// later than the instant the store decided, so an entry never outlives the
// store's RetryAfter, whatever the skew between this clock and the store's.
package overlimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/tollgate/tollgate"
)

// DefaultSize is the number of denials remembered when Options.Size is 0.
// An entry takes about 250 bytes plus its key.
const DefaultSize = 100_000

// Observer is told of every request the Store answers itself, for metrics.
// *metrics.Metrics (package server/metrics) implements it. CacheHit must be
// safe for concurrent use and fast.
type Observer interface {
	CacheHit()
}

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Size is the most denials remembered; past it the least recently used
	// is forgotten. 0 (or less) means DefaultSize. To remember none, do not
	// wrap the store.
	Size int
	// MaxAge, if positive, caps how long one denial is answered locally,
	// which bounds how long a Refund or Reset made through another process
	// goes unnoticed here. 0 means no cap: until the denial's RetryAfter
	// has passed.
	MaxAge time.Duration
	// Now is the clock for requests whose Request.Now is zero (the store
	// keeps time); nil means time.Now.
	Now func() time.Time
	// Observer, if not nil, is told of every request answered locally.
	Observer Observer
}

// Store is a tollgate.Store that answers repeated denials of another Store
// itself, as described in the package documentation. It is safe for
// concurrent use.
//
// The table is split into shards by key, each with its own lock and its
// own least-recently-used order, so that lookups of different keys rarely
// contend: one shard when Size is below shardMinSize (an exact LRU), else
// shardCount shards of Size/shardCount entries (rounded up) each. A lookup
// is two map lookups, whatever the number of limits remembered for its key.
type Store struct {
	next     tollgate.Store
	maxAge   time.Duration
	now      func() time.Time
	observer Observer
	seed     maphash.Seed
	shards   []shard
}

// Sharding of the table.
const (
	shardCount   = 16
	shardMinSize = 1024
)

// shard is a part of the table: its keys' entries, in an LRU ring.
type shard struct {
	mu    sync.Mutex
	size  int
	byKey map[string]map[tollgate.Limit]*entry // key → limit → entry
	lru   entry                                // sentinel of the ring of entries, most recent first
	n     int
	gen   uint64 // bumped when a key is forgotten
}

// entry is one remembered denial.
type entry struct {
	key        string
	lim        tollgate.Limit
	cost       int64           // the denied cost: any cost at least this is denied too
	res        tollgate.Result // the denial
	at         time.Time       // when the request was sent
	until      time.Time       // when the entry stops answering
	prev, next *entry          // in the LRU ring
}

// New returns a Store over next.
func New(next tollgate.Store, opts Options) *Store {
	s := &Store{
		next:     next,
		maxAge:   max(0, opts.MaxAge),
		now:      opts.Now,
		observer: opts.Observer,
		seed:     maphash.MakeSeed(),
	}
	size := opts.Size
	if size <= 0 {
		size = DefaultSize
	}
	if s.now == nil {
		s.now = time.Now
	}
	n := 1
	if size >= shardMinSize {
		n = shardCount
	}
	s.shards = make([]shard, n)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.size = (size + n - 1) / n
		sh.byKey = make(map[string]map[tollgate.Limit]*entry)
		sh.lru.prev, sh.lru.next = &sh.lru, &sh.lru
	}
	return s
}

func (s *Store) shard(key string) *shard {
	if len(s.shards) == 1 {
		return &s.shards[0]
	}
	return &s.shards[maphash.String(s.seed, key)%uint64(len(s.shards))]
}

// Do implements tollgate.Store. A Consume or Peek that a remembered denial
// covers is answered without the store; a Refund forgets the key's denials.
// Calls that name several limits always go to the store.
func (s *Store) Do(ctx context.Context, req tollgate.Request) (tollgate.Decision, error) {
	switch {
	case req.Op == tollgate.OpRefund:
		s.forget(req.Key)
		d, err := s.next.Do(ctx, req)
		s.forget(req.Key) // whether or not it failed: it may have applied
		return d, err
	case len(req.Limits) != 1 || (req.Op != tollgate.OpConsume && req.Op != tollgate.OpPeek):
		return s.next.Do(ctx, req)
	}

	now := req.Now
	if now.IsZero() {
		now = s.now()
	}
	res, gen, ok := s.lookup(req, now)
	if ok {
		if s.observer != nil {
			s.observer.CacheHit()
		}
		return tollgate.Decision{RetryAfter: res.RetryAfter, Results: []tollgate.Result{res}}, nil
	}
	d, err := s.next.Do(ctx, req)
	if err == nil && len(d.Results) == 1 && !d.Allowed && d.Results[0].RetryAfter > 0 {
		s.remember(req, d.Results[0], now, gen)
	}
	return d, err
}

// Reset implements tollgate.Store: it forgets the key's denials and resets
// it in the wrapped store.
func (s *Store) Reset(ctx context.Context, key string) error {
	s.forget(key)
	err := s.next.Reset(ctx, key)
	s.forget(key)
	return err
}

// Len returns the number of denials remembered, expired ones included until
// they are looked up or pushed out.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.n
		sh.mu.Unlock()
	}
	return n
}

// lookup returns the remembered denial that covers req at now, if any, and
// otherwise the generation to remember the store's answer under.
func (s *Store) lookup(req tollgate.Request, now time.Time) (tollgate.Result, uint64, bool) {
	sh := s.shard(req.Key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.byKey[req.Key][req.Limits[0]]
	if e == nil {
		return tollgate.Result{}, sh.gen, false
	}
	if !now.Before(e.until) {
		sh.remove(e)
		return tollgate.Result{}, sh.gen, false
	}
	if req.Cost < e.cost || req.ID != "" {
		// A smaller cost may fit; a request with an id may repeat an
		// allowed one, which only the store knows.
		return tollgate.Result{}, sh.gen, false
	}
	sh.unlink(e)
	sh.pushFront(e)
	elapsed := max(0, now.Sub(e.at))
	res := e.res
	res.RetryAfter = max(0, res.RetryAfter-elapsed)
	res.ResetAfter = max(0, res.ResetAfter-elapsed)
	return res, 0, true
}

// remember keeps the store's denial res of req, sent at now, unless a key
// of its shard was forgotten since generation gen (the denial may predate a
// refund).
func (s *Store) remember(req tollgate.Request, res tollgate.Result, now time.Time, gen uint64) {
	until := now.Add(res.RetryAfter)
	if s.maxAge > 0 {
		until = now.Add(min(res.RetryAfter, s.maxAge))
	}
	sh := s.shard(req.Key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen != gen {
		return
	}
	lim := req.Limits[0]
	if e := sh.byKey[req.Key][lim]; e != nil {
		// The newest denial replaces the old one.
		e.cost, e.res, e.at, e.until = req.Cost, res, now, until
		sh.unlink(e)
		sh.pushFront(e)
		return
	}
	e := &entry{key: req.Key, lim: lim, cost: req.Cost, res: res, at: now, until: until}
	byLim := sh.byKey[req.Key]
	if byLim == nil {
		byLim = make(map[tollgate.Limit]*entry, 1)
		sh.byKey[req.Key] = byLim
	}
	byLim[lim] = e
	sh.pushFront(e)
	sh.n++
	for sh.n > sh.size {
		sh.remove(sh.lru.prev)
	}
}

// forget removes every entry of key and stops denials in flight from being
// remembered.
func (s *Store) forget(key string) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gen++
	for _, e := range sh.byKey[key] {
		sh.unlink(e)
		sh.n--
	}
	delete(sh.byKey, key)
}

// remove deletes e from the table. sh.mu must be held.
func (sh *shard) remove(e *entry) {
	sh.unlink(e)
	sh.n--
	byLim := sh.byKey[e.key]
	delete(byLim, e.lim)
	if len(byLim) == 0 {
		delete(sh.byKey, e.key)
	}
}

func (sh *shard) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (sh *shard) pushFront(e *entry) {
	e.prev, e.next = &sh.lru, sh.lru.next
	sh.lru.next.prev = e
	sh.lru.next = e
}
