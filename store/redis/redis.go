// Package redis is a tollgate.Store on Redis, standalone or Cluster, through
// github.com/redis/rueidis.
//
// Each call is one Lua script run (EVALSHA, falling back to EVAL when the
// server lacks the script), so a check is atomic and one round trip;
// concurrent calls share connections through rueidis's auto-pipelining.
// The scripts (scripts/*.lua) implement exactly the semantics of
// store/memory. Scripts that write are never retried by the client, since a
// replay could count a request twice.
//
// # Keys
//
// All state of one Request.Key k sits under base = Prefix + "{" + escape(k)
// + "}": the hash base+":s" holds every limit's scalar state, base+":d" the
// recent request ids, and base+":l<window µs>" each sliding log's entries.
// escape replaces '%', '{' and '}' by %25, %7B and %7D, so a key can neither
// end the hash tag early, which would change its slot, nor collide with
// another key. Every Redis key of k therefore sits in one hash slot, as a
// Cluster requires of a script's keys, and several limits of k are checked
// by one script run. Every key gets its TTL in the script that writes it,
// and expires once its last unit has left its window.
package redis

import (
	"cmp"
	"context"
	"crypto/sha1"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/tollgate/tollgate"
)

// DefaultPrefix starts every key when Options.Prefix is empty.
const DefaultPrefix = "tg:"

// ErrBadReply is wrapped (with tollgate.ErrUnavailable) when Redis answers a
// script with something other than the documented reply.
var ErrBadReply = errors.New("redis: unexpected reply")

var (
	//go:embed scripts/check.lua
	checkLua string
	//go:embed scripts/reset.lua
	resetLua string
	// checkSHA is check.lua's SHA-1, for the waiting path's EVALSHA.
	checkSHA = fmt.Sprintf("%x", sha1.Sum([]byte(checkLua)))
)

// Defaults of Options.
const (
	// DefaultRetries is Options.Retries when 0.
	DefaultRetries = 2
	// DefaultAttemptTimeout is Options.AttemptTimeout when 0.
	DefaultAttemptTimeout = time.Second
	// DefaultRetryBackoff is Options.RetryBackoff when 0.
	DefaultRetryBackoff = 10 * time.Millisecond
	// maxRetryBackoff caps one wait between attempts.
	maxRetryBackoff = 250 * time.Millisecond
)

// Options configures a Store. Only Addrs is required.
type Options struct {
	// Addrs are the addresses, host:port, of the server or, for a Cluster,
	// of one or more seed nodes. Required.
	Addrs []string
	// Cluster selects Redis Cluster. False means a single server.
	Cluster bool
	// Username and Password authenticate (Redis ACL; Username "" means the
	// default user). Empty Password means no AUTH.
	Username, Password string
	// Credentials, when set, is asked for the username and password on
	// every new connection, in place of Username and Password, so that
	// rotated secrets (a rewritten password file, a renewed token) apply
	// without a restart. A connection refused with WRONGPASS or NOAUTH is
	// tried once more, asking again. Its error fails the connection.
	Credentials func() (username, password string, err error)
	// TLS, when non-nil, makes every connection use TLS; see TLSOptions.
	TLS *TLSOptions
	// AddressMap rewrites node addresses before dialing: an address the
	// Cluster announces (in CLUSTER SLOTS or a MOVED reply), "ip:port", maps
	// to the "host:port" this client reaches it at, for clusters behind NAT
	// or private endpoints. Addresses not in it are dialed as they are.
	AddressMap map[string]string
	// Prefix starts every key; "" means DefaultPrefix. It must not contain
	// '{' or '}'.
	Prefix string
	// DialTimeout bounds connecting to a node; 0 means
	// rueidis.DefaultDialTimeout (5 s).
	DialTimeout time.Duration
	// Retries is how many more times a call that failed transiently (a
	// lost or timed-out connection, CLUSTERDOWN, TRYAGAIN, LOADING,
	// READONLY, MASTERDOWN) is tried, within its context's deadline, after
	// a jittered backoff. A consume is retried only under a request id, so
	// that a retry of one that did run is not counted twice; refunds are
	// never retried. 0 means DefaultRetries; negative disables retries.
	Retries int
	// AttemptTimeout bounds one attempt, so that a node that stopped
	// answering leaves time for a retry; 0 means DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// RetryBackoff is the first wait between attempts, doubled each time
	// (jittered, at most 250 ms); 0 means DefaultRetryBackoff.
	RetryBackoff time.Duration
	// BreakAfter is how long every call for a hash slot must have been
	// failing before the slot's circuit opens and its calls fail fast with
	// ErrCircuitOpen (one per ProbeEvery still tries). 0 means
	// DefaultBreakAfter; negative disables the breaker.
	BreakAfter time.Duration
	// ProbeEvery is how often an open circuit lets a call through; 0 means
	// DefaultProbeEvery.
	ProbeEvery time.Duration
	// HealAfter is how long a slot's calls may keep failing, or a call keep
	// being redirected, before the store stops trusting its client: it builds
	// a new one from Addrs (resolving names again), swaps it in and closes
	// the old one a little later; at most once per 30 s (jittered). 0 means
	// DefaultHealAfter; negative disables healing.
	HealAfter time.Duration
	// TopologyRefresh is how often a Cluster client reloads the slot map
	// even when nothing failed (it also does on every redirect and
	// connection error). 0 means DefaultTopologyRefresh; negative disables.
	TopologyRefresh time.Duration
	// ConnsPerNode is how many connections the client keeps to each node,
	// rounded up to a power of two (at most 256); calls share them through
	// auto-pipelining. 0 means rueidis's default (2 on a 2-core machine).
	ConnsPerNode int
	// ConnTimeout is how long a connection may wait for any reply (or a
	// background PING's) before it is deemed dead, closed and re-dialed;
	// 0 means DefaultConnTimeout.
	ConnTimeout time.Duration
	// WaitReplicas, when positive, makes each consume and refund wait
	// (Redis WAIT, up to WaitTimeout) until that many replicas have its
	// write, so that a failover after the answer does not lose it. When
	// fewer confirm within WaitTimeout, the call fails with an error that
	// wraps ErrNotReplicated (and tollgate.ErrUnavailable): the master
	// counted the units, a failover may lose them. While a master has
	// fewer replicas connected than WaitReplicas, there is nothing to wait
	// for: its calls answer at once, unprotected, until its replicas are
	// back (counted every second), rather than each failing after the
	// timeout. 0 (the default) answers as soon as the master has applied
	// the write: replication is asynchronous.
	WaitReplicas int
	// WaitTimeout bounds the wait for replicas; 0 means DefaultWaitTimeout.
	// The wait also ends, by the same rule, a little before the call's
	// deadline, so that the answer comes in time.
	//
	// The writes are group-committed: WAIT blocks the connection it runs
	// on and acknowledges every write sent before it there, so the writes
	// to one master queue while its batches wait, and each batch (its
	// writes, then one WAIT) goes on one connection. A master has two
	// batches on the wire at most. A write whose slot moved meanwhile runs
	// alone, with a WAIT of its own, holding a connection; at most
	// MaxWaiting of those run at once.
	WaitTimeout time.Duration
	// Observer receives resilience events (retries, fast failures, heals);
	// nil means none.
	Observer Observer
	// NoRequestIDs stops the store from giving each consume without a
	// caller's request id one of its own. Such consumes are then never
	// retried. Ids cost a few bytes per sliding-log entry, and for the
	// sliding window and GCRA a sorted set of the dedupe window's ids.
	NoRequestIDs bool
	// Logger receives warnings (insecure TLS); nil discards.
	Logger *slog.Logger
	// MaxInFlight bounds the calls of the Store running at once, counting
	// those whose callers gave up on a node that stopped answering (they
	// end in the background, each in a goroutine of its own, when the
	// connection is torn down): past it a call fails at once with
	// ErrOverloaded. 0 means DefaultMaxInFlight; negative also means it.
	MaxInFlight int
	// Now is the clock of the store's own bookkeeping: the circuit
	// breaker, healing, and the backoffs of waiting for replicas. It is
	// read when a call starts and when it ends. Nil means time.Now. It does
	// not set the time a check is made at: that is Redis's TIME, or the
	// Limiter's (tollgate.Options.Now). Tests drive the breaker with it.
	Now func() time.Time
}

// Store is a tollgate.Store on Redis. It is safe for concurrent use; Close
// releases its connections.
type Store struct {
	client  atomic.Pointer[rueidis.Client] // swapped by heal
	options rueidis.ClientOption           // to build a new client
	prefix  string
	cluster bool
	check   *rueidis.Lua
	reset   *rueidis.Lua
	retry   retryPolicy
	ids     bool // give consumes request ids
	obs     Observer
	log     *slog.Logger
	now     func() time.Time // Options.Now

	waitN     int64                // replicas a write waits for (0: none)
	waitMS    int64                // and for how long at most
	waiting   chan struct{}        // one token per call that may wait at once
	commits   commits              // the group commit of waiting writes
	waitOff   *[16384]atomic.Bool  // per slot: its master lacks the replicas
	checking  sync.Map             // masters whose replicas are being counted
	dialOff   *[16384]atomic.Int64 // per slot: no dedicated dial until (Unix ns)
	lookups   pacer                // of the slot map, for waitOff and dialOff
	health    *slotHealth          // nil: no breaker
	healAfter time.Duration
	healGate  healGate
	healMu    sync.Mutex
	retired   []rueidis.Client // replaced clients, closed after a grace period
	closed    bool
	done      chan struct{} // closed by Close: stops the slot-map watcher
	watching  atomic.Bool
	authLog   authLog
	follow    follower
}

// New connects to Redis. It fails when no address answers or an option is
// invalid.
func New(ctx context.Context, opts Options) (*Store, error) {
	if len(opts.Addrs) == 0 {
		return nil, errors.New("redis: no address")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("redis: prefix %q contains a brace", opts.Prefix)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	tlsConfig, err := opts.TLS.config(opts.Logger)
	if err != nil {
		return nil, err
	}
	co := rueidis.ClientOption{
		InitAddress:       opts.Addrs,
		ForceSingleClient: !opts.Cluster,
		Username:          opts.Username,
		Password:          opts.Password,
		TLSConfig:         tlsConfig,
		// An idle connection is pinged this often (and torn down when the
		// PING goes unanswered for ConnTimeout): a node that vanished
		// while the service was idle is noticed, and followed, before its
		// replica takes over.
		Dialer:       net.Dialer{Timeout: opts.DialTimeout, KeepAlive: pingEvery},
		DisableCache: true, // no client-side caching: every check must reach the server
	}
	if opts.Credentials != nil {
		co.AuthCredentialsFn = authFn(opts.Credentials)
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	s := &Store{}
	if len(opts.AddressMap) > 0 || opts.Observer != (nopObserver{}) || opts.Cluster {
		co.DialCtxFn = dialer(opts.AddressMap, opts.Observer, cmp.Or(opts.ConnTimeout, DefaultConnTimeout), s.lostConn)
	}
	// A connection whose node stopped answering is torn down (and the slot
	// map reloaded) after this long, not rueidis's default 10 s.
	co.ConnWriteTimeout = cmp.Or(opts.ConnTimeout, DefaultConnTimeout)
	if opts.ConnsPerNode > 1 {
		co.PipelineMultiplex = min(bits.Len(uint(opts.ConnsPerNode-1)), rueidis.MaxPipelineMultiplex)
	}
	if opts.Cluster {
		co.ClusterOption.MaxMovedRedirections = maxRedirects
		switch {
		case opts.TopologyRefresh == 0:
			co.ClusterOption.ShardsRefreshInterval = DefaultTopologyRefresh
		case opts.TopologyRefresh > 0:
			co.ClusterOption.ShardsRefreshInterval = opts.TopologyRefresh
		}
	}
	s.options, s.prefix, s.cluster = co, opts.Prefix, opts.Cluster
	s.retry, s.ids, s.obs, s.log = newRetryPolicy(opts), !opts.NoRequestIDs && opts.Retries >= 0, opts.Observer, opts.Logger
	s.healAfter, s.done = cmp.Or(opts.HealAfter, DefaultHealAfter), make(chan struct{})
	s.now = opts.Now
	if s.now == nil {
		s.now = time.Now
	}
	client, err := rueidis.NewClient(co)
	if err != nil {
		return nil, fmt.Errorf("redis: connect %v: %w", opts.Addrs, err)
	}
	s.client.Store(&client)
	if opts.BreakAfter >= 0 {
		s.health = &slotHealth{breakAfter: cmp.Or(opts.BreakAfter, DefaultBreakAfter), probeEvery: cmp.Or(opts.ProbeEvery, DefaultProbeEvery)}
	}
	s.check, s.reset = rueidis.NewLuaScript(checkLua), rueidis.NewLuaScript(resetLua)
	if opts.WaitReplicas > 0 {
		s.waitN = int64(opts.WaitReplicas)
		s.waitMS = cmp.Or(opts.WaitTimeout, DefaultWaitTimeout).Milliseconds()
		s.waiting = make(chan struct{}, MaxWaiting)
		s.waitOff = new([16384]atomic.Bool)
		s.dialOff = new([16384]atomic.Int64)
	}
	if err := s.Ping(ctx); err != nil {
		client.Close()
		return nil, err
	}
	if s.cluster && s.healAfter >= 0 {
		go s.patrol()
	}
	return s, nil
}

func (s *Store) c() rueidis.Client { return *s.client.Load() }

// Do implements tollgate.Store.
func (s *Store) Do(ctx context.Context, req tollgate.Request) (tollgate.Decision, error) {
	now := "" // the script reads TIME
	if !req.Now.IsZero() {
		now = strconv.FormatInt(req.Now.UnixMicro(), 10)
	}
	if req.Op == tollgate.OpConsume && req.ID == "" && s.ids {
		req.ID = newRequestID()
	}
	args := make([]string, 0, 7+3*len(req.Limits))
	args = append(args,
		strconv.Itoa(int(req.Op)),
		strconv.FormatInt(req.Cost, 10),
		now,
		req.ID,
		strconv.FormatInt(req.DedupeWindow.Microseconds(), 10),
		strconv.Itoa(req.MaxLogEntries),
		maxIDs,
	)
	base := s.base(req.Key)
	keys := make([]string, 2, 2+len(req.Limits))
	keys[0], keys[1] = base+":s", base+":d"
	for _, l := range req.Limits {
		w := strconv.FormatInt(l.Window.Microseconds(), 10)
		args = append(args, strconv.Itoa(int(l.Algorithm)), strconv.FormatInt(l.Units, 10), w)
		keys = append(keys, base+":l"+w)
	}
	// A consume may run twice only when its id makes the second a repeat.
	retryable := req.Op == tollgate.OpPeek || (req.Op == tollgate.OpConsume && req.ID != "")
	reply, err := guard(s, ctx, req.Key, retryable, func(ctx context.Context) ([]int64, error) {
		if s.waitN > 0 && req.Op != tollgate.OpPeek {
			if sl := s.slotOf(req.Key); !s.waitOff[sl].Load() {
				return s.commit(ctx, sl, keys, args)
			}
		}
		return s.check.Exec(ctx, s.c(), keys, args).AsIntSlice()
	})
	if err != nil {
		return tollgate.Decision{}, s.fail(err)
	}
	if len(reply) != 1+4*len(req.Limits) {
		return tollgate.Decision{}, fmt.Errorf("%w: %w: %d values, want %d", tollgate.ErrUnavailable, ErrBadReply, len(reply), 1+4*len(req.Limits))
	}
	d := tollgate.Decision{Allowed: reply[0] == 1, Results: make([]tollgate.Result, len(req.Limits))}
	for i, l := range req.Limits {
		allowed, used, retry, reset := reply[1+4*i] == 1, reply[2+4*i], reply[3+4*i], reply[4+4*i]
		r := tollgate.Result{
			Allowed:    allowed,
			Limit:      l.Units,
			Used:       used,
			Remaining:  max(0, l.Units-used),
			ResetAfter: time.Duration(max(0, reset)) * time.Microsecond,
		}
		if !allowed {
			r.RetryAfter = time.Duration(retry) * time.Microsecond
			d.RetryAfter = max(d.RetryAfter, r.RetryAfter)
		}
		d.Results[i] = r
	}
	return d, nil
}

var maxIDs = strconv.Itoa(tollgate.MaxDedupeIDs)

// slotOf is key's hash slot; 0 outside a Cluster.
func (s *Store) slotOf(key string) uint16 {
	if !s.cluster {
		return 0
	}
	return slot(escape(key))
}

// Reset implements tollgate.Store: it deletes every Redis key of key, in
// one script run once it knows which sliding logs the key has.
func (s *Store) Reset(ctx context.Context, key string) error {
	base := s.base(key)
	_, err := guard(s, ctx, key, true, func(ctx context.Context) (struct{}, error) {
		c := s.c()
		fields, err := c.Do(ctx, c.B().Hkeys().Key(base+":s").Build()).AsStrSlice()
		if err != nil {
			return struct{}{}, err
		}
		keys := []string{base + ":s", base + ":d"}
		for _, f := range fields {
			if w, ok := strings.CutPrefix(f, "l"); ok && strings.HasSuffix(w, ":t") {
				keys = append(keys, base+":l"+strings.TrimSuffix(w, ":t"))
			}
		}
		// A log created between HKEYS and the script is named in its reply;
		// a few rounds settle any realistic race.
		for range 4 {
			missing, err := s.reset.Exec(ctx, c, keys, nil).AsStrSlice()
			if err != nil || len(missing) == 0 {
				return struct{}{}, err
			}
			for _, w := range missing {
				keys = append(keys, base+":l"+w)
			}
		}
		return struct{}{}, fmt.Errorf("%w: the key kept gaining sliding logs", ErrBadReply)
	})
	if err != nil {
		return s.fail(err)
	}
	return nil
}

// Ping checks that Redis answers; for a Cluster, that one node does. A
// failure names its cause; refused credentials are also logged.
func (s *Store) Ping(ctx context.Context) error {
	// Retried like a read: a connection that was just cut (a killed
	// client, a failover) is no reason to report the store down.
	_, err := retryDo(ctx, s.retry, true, s.obs, func(ctx context.Context) (struct{}, error) {
		c := s.c()
		return struct{}{}, c.Do(ctx, c.B().Ping().Build()).Error()
	})
	if err != nil {
		s.authLog.note(s, err, s.now())
		return s.fail(err)
	}
	return nil
}

// Ready reports whether the store serves every hash slot: Redis answers a
// PING, and no slot's circuit is open (see Options.BreakAfter). A service
// uses it for its readiness probe, to be taken out of rotation while a shard
// has no master and back once its slots are served again.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.Ping(ctx); err != nil {
		return err
	}
	if s.health == nil {
		return nil
	}
	if n, first := s.health.open(s.now()); n > 0 {
		return fmt.Errorf("%w: %d hash slots failing (slot %d first)", ErrCircuitOpen, n, first)
	}
	return nil
}

// Close closes every connection.
func (s *Store) Close() error {
	s.healMu.Lock()
	defer s.healMu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
		s.c().Close()
		s.follow.dropClients(nil)
		for _, old := range s.retired {
			old.Close()
		}
		s.retired = nil
	}
	return nil
}

// guard runs call for key's hash slot through the circuit breaker and the
// retry policy, and heals the client when the slot keeps failing.
func guard[T any](s *Store, ctx context.Context, key string, retryable bool, call func(context.Context) (T, error)) (T, error) {
	sl := s.slotOf(key)
	start := s.now() // the clock is read when the call starts and when it ends
	if s.health != nil && !s.health.admit(sl, start) {
		s.obs.FastFail()
		var zero T
		return zero, ErrCircuitOpen
	}
	p := s.retry
	if s.cluster && s.healAfter >= 0 {
		// A call that did not reach its node asks where its slot went,
		// and the retry goes to the client rebuilt when it moved; after
		// an idle time, an attempt leaves time for that retry.
		p.between, p.split = s.relocate, s.follow.idle(start)
		if p.split {
			s.catchUp(ctx)
		}
	}
	v, err := retryDo(ctx, p, retryable, s.obs, call)
	end := s.now()
	if err == nil {
		s.follow.served(end)
	}
	if s.cluster && s.healAfter >= 0 && lostNode(err) {
		s.locateSoon(refusedAddr(err)) // for the next calls
	}
	s.authLog.note(s, err, end)
	if s.health == nil || (err != nil && !transient(err)) {
		return v, err // a reply error says nothing about the way to Redis
	}
	failing := s.health.record(sl, err != nil, end)
	if err == nil || s.healAfter < 0 {
		return v, err
	}
	if s.cluster {
		s.watch()
	}
	switch kind := KindOf(err); {
	case kind == KindMoved || kind == KindAsk:
		s.heal("redirect_loop", sl, kind, failing, end)
	case failing >= s.healAfter:
		s.heal("persistent_errors", sl, kind, failing, end)
	}
	return v, err
}

// Key returns the Redis key of the hash that holds the scalar state of key
// (a Request.Key) for every limit; its sliding logs are named after it with
// ":l<window µs>" in place of ":s". Useful for inspecting state with MEMORY
// USAGE or TTL.
func (s *Store) Key(key string) string { return s.base(key) + ":s" }

// Keys returns every Redis key that may hold state of key (a Request.Key)
// under limits: the hash, the request ids and one sliding log per window.
func (s *Store) Keys(key string, limits ...tollgate.Limit) []string {
	base := s.base(key)
	keys := []string{base + ":s", base + ":d"}
	for _, l := range limits {
		if l.Algorithm == tollgate.SlidingLog {
			keys = append(keys, base+":l"+strconv.FormatInt(l.Window.Microseconds(), 10))
		}
	}
	return keys
}

// base is the start of every Redis key of key, hash tag included.
func (s *Store) base(key string) string { return s.prefix + "{" + escape(key) + "}" }

var escaper = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D")

func escape(key string) string {
	if !strings.ContainsAny(key, "%{}") {
		return key
	}
	return escaper.Replace(key)
}

func (s *Store) fail(err error) error {
	return fmt.Errorf("%w: %w", tollgate.ErrUnavailable, err)
}
