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
// when full. A request it answers gets Allowed false, the Limit, Used and
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
type Store struct {
	next     tollgate.Store
	size     int
	maxAge   time.Duration
	now      func() time.Time
	observer Observer

	mu    sync.Mutex
	byKey map[string]*entry // the key's first entry; more follow in sibling
	lru   entry             // sentinel of the ring of entries, most recent first
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
	sibling    *entry          // the next entry of the same key (another Limit)
	prev, next *entry          // in the LRU ring
}

// New returns a Store over next.
func New(next tollgate.Store, opts Options) *Store {
	s := &Store{
		next:     next,
		size:     opts.Size,
		maxAge:   max(0, opts.MaxAge),
		now:      opts.Now,
		observer: opts.Observer,
		byKey:    make(map[string]*entry),
	}
	if s.size <= 0 {
		s.size = DefaultSize
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.lru.prev, s.lru.next = &s.lru, &s.lru
	return s
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
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// lookup returns the remembered denial that covers req at now, if any, and
// otherwise the generation to remember the store's answer under.
func (s *Store) lookup(req tollgate.Request, now time.Time) (tollgate.Result, uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.find(req.Key, req.Limits[0])
	if e == nil {
		return tollgate.Result{}, s.gen, false
	}
	if !now.Before(e.until) {
		s.remove(e)
		return tollgate.Result{}, s.gen, false
	}
	if req.Cost < e.cost || req.ID != "" {
		// A smaller cost may fit; a request with an id may repeat an
		// allowed one, which only the store knows.
		return tollgate.Result{}, s.gen, false
	}
	s.unlink(e)
	s.pushFront(e)
	elapsed := max(0, now.Sub(e.at))
	res := e.res
	res.RetryAfter = max(0, res.RetryAfter-elapsed)
	res.ResetAfter = max(0, res.ResetAfter-elapsed)
	return res, 0, true
}

// remember keeps the store's denial res of req, sent at now, unless a key
// was forgotten since generation gen (the denial may predate a refund).
func (s *Store) remember(req tollgate.Request, res tollgate.Result, now time.Time, gen uint64) {
	until := now.Add(res.RetryAfter)
	if s.maxAge > 0 {
		until = now.Add(min(res.RetryAfter, s.maxAge))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return
	}
	if e := s.find(req.Key, req.Limits[0]); e != nil {
		// The newest denial replaces the old one.
		e.cost, e.res, e.at, e.until = req.Cost, res, now, until
		s.unlink(e)
		s.pushFront(e)
		return
	}
	e := &entry{key: req.Key, lim: req.Limits[0], cost: req.Cost, res: res, at: now, until: until}
	e.sibling = s.byKey[req.Key]
	s.byKey[req.Key] = e
	s.pushFront(e)
	s.n++
	for s.n > s.size {
		s.remove(s.lru.prev)
	}
}

// forget removes every entry of key and stops denials in flight from being
// remembered.
func (s *Store) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	for e := s.byKey[key]; e != nil; e = e.sibling {
		s.unlink(e)
		s.n--
	}
	delete(s.byKey, key)
}

// find returns the entry of key and lim, or nil. s.mu must be held.
func (s *Store) find(key string, lim tollgate.Limit) *entry {
	for e := s.byKey[key]; e != nil; e = e.sibling {
		if e.lim == lim {
			return e
		}
	}
	return nil
}

// remove deletes e from the table. s.mu must be held.
func (s *Store) remove(e *entry) {
	s.unlink(e)
	s.n--
	first := s.byKey[e.key]
	switch {
	case first == e && e.sibling == nil:
		delete(s.byKey, e.key)
	case first == e:
		s.byKey[e.key] = e.sibling
	default:
		p := first
		for p.sibling != e {
			p = p.sibling
		}
		p.sibling = e.sibling
	}
}

func (s *Store) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (s *Store) pushFront(e *entry) {
	e.prev, e.next = &s.lru, s.lru.next
	s.lru.next.prev = e
	s.lru.next = e
}
