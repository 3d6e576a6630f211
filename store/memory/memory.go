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
	_                 [32]byte // 64 bytes, a cache line per shard: no false sharing
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
	sh := s.shard(req.Key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.lastReq, sh.lastReal = nowUS, int64(time.Since(s.started))
	e := sh.keys[k]
	if e == nil {
		if req.Op != tollgate.OpConsume {
			// Nothing to read or refund: answer as an empty state would,
			// without allocating one.
			res, _ := newState(k.alg).apply(req.Op, req.Cost, req.Limit.Units, req.Limit.Window.Microseconds(), nowUS)
			return res, nil
		}
		e = &entry{state: newState(k.alg)}
		sh.keys[k] = e
	}
	res, idleAt := e.state.apply(req.Op, req.Cost, req.Limit.Units, req.Limit.Window.Microseconds(), nowUS)
	e.idleAt = idleAt
	if idleAt <= nowUS {
		delete(sh.keys, k)
	}
	return res, nil
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
		sh.mu.Unlock()
	}
}
