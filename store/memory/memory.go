// Package memory is an in-process tollgate.Store: state lives in this
// process's memory, so it limits one process only. It implements exactly the
// semantics of store/redis and is the zero-setup default.
package memory

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/tollgate/tollgate"
)

// DefaultSweepInterval is how often idle keys are evicted when
// Options.SweepInterval is 0.
const DefaultSweepInterval = time.Minute

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
}

// Store is an in-memory tollgate.Store, safe for concurrent use. Keys are
// spread over shards, each with its own lock, so calls on different keys
// rarely contend. Call Close to stop its sweeper.
type Store struct {
	now     func() time.Time
	seed    maphash.Seed
	shards  [shardCount]shard
	started time.Time // origin of the shards' monotonic readings

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type shard struct {
	mu   sync.Mutex
	keys map[stateKey]*entry
	// The time of the shard's latest request and when (monotonic ns since
	// Store.started) it came: Sweep's notion of now is that time advanced by
	// the real time since, so that a fake clock in the past or future never
	// makes live state look idle.
	lastReq, lastReal int64
	seen              map[stateKey]*idSet // request ids, for the algorithms whose state has no room for them
	_                 [24]byte            // 64 bytes, a cache line per shard: no false sharing
}

type stateKey struct {
	key string
	alg tollgate.Algorithm
}

type entry struct {
	state  state
	idleAt int64 // µs: from then on the state equals an empty one
}

// New returns a Store and starts its sweeper.
func New(opts Options) *Store {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	s := &Store{
		now:     opts.Now,
		seed:    maphash.MakeSeed(),
		started: time.Now(),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].keys = make(map[stateKey]*entry)
	}
	go s.sweepLoop(opts.SweepInterval)
	return s
}

// Do implements tollgate.Store.
func (s *Store) Do(ctx context.Context, req tollgate.Request) (tollgate.Result, error) {
	if err := ctx.Err(); err != nil {
		return tollgate.Result{}, err
	}
	now := req.Now
	if now.IsZero() {
		now = s.now()
	}
	nowUS := now.UnixMicro()

	k := stateKey{key: req.Key, alg: req.Limit.Algorithm}
	units, window, dedupe := req.Limit.Units, req.Limit.Window.Microseconds(), req.DedupeWindow.Microseconds()
	sh := s.shard(req.Key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.lastReq, sh.lastReal = nowUS, int64(time.Since(s.started))
	e := sh.keys[k]
	if e == nil {
		if req.Op != tollgate.OpConsume {
			// Nothing to read or refund: answer as an empty state would,
			// without allocating one.
			if req.Op == tollgate.OpRefund {
				delete(sh.seen, k)
			}
			res, _ := newState(k.alg).apply(req.Op, req.Cost, units, window, nowUS, "")
			return res, nil
		}
		e = &entry{state: newState(k.alg)}
		sh.keys[k] = e
	}

	// A repeat of a consume allowed within the dedupe window is answered
	// like a peek, but as allowed. The sliding log keeps ids in its entries;
	// the other algorithms in a set beside the state, as the Redis store does.
	op, repeat := req.Op, false
	if op == tollgate.OpConsume && req.ID != "" {
		if log, ok := e.state.(*logState); ok {
			repeat = log.seen(req.Cost, req.ID, nowUS, dedupe)
		} else {
			repeat = sh.seen[k].has(member(req.Cost, req.ID), nowUS, dedupe)
		}
		if repeat {
			op = tollgate.OpPeek
		}
	}
	res, idleAt := e.state.apply(op, req.Cost, units, window, nowUS, req.ID)
	switch {
	case repeat:
		res.Allowed, res.RetryAfter = true, 0
	case op == tollgate.OpConsume && res.Allowed && req.ID != "" && k.alg != tollgate.SlidingLog:
		sh.remember(k, member(req.Cost, req.ID), nowUS, dedupe)
	case op == tollgate.OpRefund:
		delete(sh.seen, k) // a refund ends deduplication
	}
	e.idleAt = idleAt
	if idleAt <= nowUS {
		delete(sh.keys, k)
	}
	return res, nil
}

// idSet holds the request ids of recent consumes of one key (sliding window
// and GCRA): member → when it was allowed.
type idSet struct {
	at      map[string]int64
	expires int64 // µs: no member counts after this
}

func (d *idSet) has(m string, now, dedupe int64) bool {
	if d == nil {
		return false
	}
	at, ok := d.at[m]
	return ok && at > now-dedupe
}

func (sh *shard) remember(k stateKey, m string, now, dedupe int64) {
	d := sh.seen[k]
	if d == nil {
		if sh.seen == nil {
			sh.seen = make(map[stateKey]*idSet)
		}
		d = &idSet{at: make(map[string]int64)}
		sh.seen[k] = d
	}
	for old, at := range d.at {
		if at <= now-dedupe {
			delete(d.at, old)
		}
	}
	d.at[m] = now
	d.expires = now + dedupe
}

// Reset implements tollgate.Store.
func (s *Store) Reset(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, a := range []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA} {
		delete(sh.keys, stateKey{key: key, alg: a})
		delete(sh.seen, stateKey{key: key, alg: a})
	}
	return nil
}

// Len returns the number of keys held, counting each algorithm's state of a
// key once.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.keys)
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
		for k, e := range sh.keys {
			if e.idleAt <= cutoff {
				delete(sh.keys, k)
			}
		}
		for k, d := range sh.seen {
			if d.expires <= cutoff {
				delete(sh.seen, k)
			}
		}
		sh.mu.Unlock()
	}
}
