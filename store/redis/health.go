package redis

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// ErrCircuitOpen is wrapped (with tollgate.ErrUnavailable) by calls refused at
// once because every call for their hash slot has been failing for
// Options.BreakAfter: while a shard has no master, its checks fail fast and
// cost nothing. One call per ProbeEvery still goes through, and its success
// closes the circuit.
var ErrCircuitOpen = errors.New("redis: circuit open: this hash slot's node keeps failing")

// ErrOverloaded is wrapped (with tollgate.ErrUnavailable) by calls refused at
// once because Options.MaxInFlight calls of the Store are still running:
// calls that gave up on an unresponsive node finish in the background, and
// their number is bounded.
var ErrOverloaded = errors.New("redis: too many calls still running")

// Defaults of the health options.
const (
	DefaultBreakAfter      = time.Second
	DefaultProbeEvery      = 100 * time.Millisecond
	DefaultHealAfter       = 5 * time.Second
	DefaultTopologyRefresh = 30 * time.Second
	DefaultConnTimeout     = 2 * time.Second
	DefaultWaitTimeout     = 100 * time.Millisecond
	// DefaultMaxInFlight is Options.MaxInFlight when 0.
	DefaultMaxInFlight = 10_000
	// MaxWaiting is how many calls of one Store may wait for replicas at
	// once outside the group commit (Options.WaitReplicas).
	MaxWaiting = 64
	// replicaCheckEvery paces the counting of a master's replicas while
	// they are fewer than Options.WaitReplicas.
	replicaCheckEvery = time.Second
	// dialBackoff is how long the waiting calls of a master that refused a
	// connection fail fast.
	dialBackoff = 250 * time.Millisecond
	// lookupEvery paces the slot-map lookups of the waiting path.
	lookupEvery = 100 * time.Millisecond
	// minHealInterval is the least time between two client rebuilds.
	minHealInterval = 30 * time.Second
	// retireGrace is how long a replaced client lives on for calls in flight.
	retireGrace = 10 * time.Second
	// maxRedirects bounds the MOVED/ASK redirects the client follows for one
	// call, so that a redirect loop shows as an error instead of a hang.
	maxRedirects = 8
)

// Observer receives the store's resilience events. Its methods must be fast
// and safe for concurrent use. Kinds and reasons are short snake_case words
// (see Kind).
type Observer interface {
	// Retry: an attempt failed with an error of kind and is tried again.
	Retry(kind string)
	// FastFail: a call was refused because its slot's circuit is open.
	FastFail()
	// Heal: the store replaced its client, for reason ("redirect_loop",
	// "persistent_errors" or "topology_changed").
	Heal(reason string)
	// Redirect: a node answered "moved" or "ask" (the client follows it).
	Redirect(kind string)
	// TopologyRefresh: the client asked a node for the slot map.
	TopologyRefresh()
	// Reconnect: the client dialed a node it had dialed before.
	Reconnect()
}

type nopObserver struct{}

func (nopObserver) Retry(string)     {}
func (nopObserver) FastFail()        {}
func (nopObserver) Heal(string)      {}
func (nopObserver) Redirect(string)  {}
func (nopObserver) TopologyRefresh() {}
func (nopObserver) Reconnect()       {}

// Kind is the kind of a store error. Its String is the label metrics,
// logs, `tollgate-lab bench` and `tollgate-lab chaos` show.
type Kind uint8

// The kinds of store errors. KindNone is a nil error.
const (
	KindNone          Kind = iota
	KindCircuitOpen        // the slot's circuit is open (ErrCircuitOpen): failed fast
	KindNotReplicated      // fewer replicas than asked confirmed a write (ErrNotReplicated)
	KindTimeout            // a deadline passed
	KindCanceled           // the caller gave up
	KindMoved              // a MOVED redirect reached the caller
	KindAsk                // an ASK redirect reached the caller
	KindClusterDown        // CLUSTERDOWN: a slot without a master
	KindTryAgain           // TRYAGAIN: a multi-key call on a slot being migrated
	KindLoading            // LOADING: a node still loading its data
	KindReadOnly           // READONLY: a write sent to a replica
	KindMasterDown         // MASTERDOWN: a replica that lost its master
	KindNoScript           // NOSCRIPT: the script was not loaded
	KindClosed             // the client is closing
	KindAuth               // credentials refused: WRONGPASS, NOAUTH, or none to give
	KindConn               // the connection failed (refused, reset, unreachable)
	KindOther              // any other reply error
	KindOverloaded         // too many calls still running (ErrOverloaded)
	numKinds
)

var kindLabels = [numKinds]string{"", "circuit_open", "not_replicated", "timeout", "canceled", "moved", "ask",
	"clusterdown", "tryagain", "loading", "readonly", "masterdown", "noscript", "closed", "auth", "conn", "other", "overloaded"}

// String returns the kind's label: "" for KindNone, else "circuit_open",
// "not_replicated", "timeout", "canceled", "moved", "ask", "clusterdown",
// "tryagain", "loading", "readonly", "masterdown", "noscript", "closed",
// "auth", "conn", "other" or "overloaded".
func (k Kind) String() string {
	if k < numKinds {
		return kindLabels[k]
	}
	return "other"
}

// Unavailable reports whether the kind means the node cannot serve the
// call now but may soon (a failover, a migration, a dead or closing
// connection, an open circuit), as opposed to a timeout or a reply the
// store does not expect.
func (k Kind) Unavailable() bool {
	switch k {
	case KindNone, KindTimeout, KindNoScript, KindOther:
		return false
	}
	return true
}

// redisKinds are the reply errors recognized by their first word.
var redisKinds = []struct {
	prefix string
	kind   Kind
}{{"CLUSTERDOWN", KindClusterDown}, {"TRYAGAIN", KindTryAgain}, {"LOADING", KindLoading},
	{"READONLY", KindReadOnly}, {"MASTERDOWN", KindMasterDown}, {"NOSCRIPT", KindNoScript}}

// KindOf returns the kind of a store error.
func KindOf(err error) Kind {
	switch {
	case err == nil:
		return KindNone
	case errors.Is(err, ErrCircuitOpen):
		return KindCircuitOpen
	case errors.Is(err, ErrNotReplicated):
		return KindNotReplicated
	case errors.Is(err, ErrOverloaded):
		return KindOverloaded
	case errors.Is(err, context.DeadlineExceeded):
		return KindTimeout
	case errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.Is(err, rueidis.ErrClosing):
		return KindClosed
	case authFailed(err):
		return KindAuth
	}
	rerr, ok := rueidis.IsRedisErr(err)
	if !ok {
		return KindConn
	}
	if _, ok := rerr.IsMoved(); ok {
		return KindMoved
	}
	if _, ok := rerr.IsAsk(); ok {
		return KindAsk
	}
	msg := rerr.Error()
	for _, k := range redisKinds {
		if strings.HasPrefix(msg, k.prefix) {
			return k.kind
		}
	}
	return KindOther
}

// slotHealth tracks, per hash slot, since when calls have been failing: the
// basis of the circuit breaker and of healing.
type slotHealth struct {
	failingSince [16384]atomic.Int64 // Unix ns of the streak's first failure; 0 after a success
	lastProbe    [16384]atomic.Int64 // Unix ns of the last call let through an open circuit
	breakAfter   time.Duration
	probeEvery   time.Duration
}

// admit reports whether a call for slot may go to Redis now.
func (h *slotHealth) admit(slot uint16, now time.Time) bool {
	since := h.failingSince[slot].Load()
	if since == 0 || now.UnixNano()-since < int64(h.breakAfter) {
		return true
	}
	last := h.lastProbe[slot].Load()
	return now.UnixNano()-last >= int64(h.probeEvery) && h.lastProbe[slot].CompareAndSwap(last, now.UnixNano())
}

// record notes a call's outcome and returns how long slot has been failing.
func (h *slotHealth) record(slot uint16, failed bool, now time.Time) time.Duration {
	if !failed {
		h.failingSince[slot].Store(0)
		return 0
	}
	h.failingSince[slot].CompareAndSwap(0, now.UnixNano())
	return time.Duration(now.UnixNano() - h.failingSince[slot].Load())
}

// reset closes every circuit: after a new client, the old failures say
// nothing about the new connections.
func (h *slotHealth) reset() {
	for i := range h.failingSince {
		h.failingSince[i].Store(0)
	}
}

// failing lists the slots whose calls have been failing for less than
// within: a slot that nothing calls any more keeps its streak, and must not
// hold a watcher forever.
func (h *slotHealth) failing(now time.Time, within time.Duration) []uint16 {
	var sls []uint16
	for i := range h.failingSince {
		if since := h.failingSince[i].Load(); since != 0 && now.UnixNano()-since < int64(within) {
			sls = append(sls, uint16(i))
		}
	}
	return sls
}

// open counts the slots whose circuit is open and returns the first.
func (h *slotHealth) open(now time.Time) (n int, first uint16) {
	for i := range h.failingSince {
		if since := h.failingSince[i].Load(); since != 0 && now.UnixNano()-since >= int64(h.breakAfter) {
			if n == 0 {
				first = uint16(i)
			}
			n++
		}
	}
	return n, first
}

// healGate allows one client rebuild per minHealInterval, jittered so that
// many instances do not rebuild together.
type healGate struct{ next atomic.Int64 }

func (g *healGate) try(now time.Time) bool {
	next := g.next.Load()
	if now.UnixNano() < next {
		return false
	}
	jitter := time.Duration(rand.Int64N(int64(minHealInterval / 4)))
	return g.next.CompareAndSwap(next, now.Add(minHealInterval+jitter).UnixNano())
}

// failed lets the next rebuild come sooner after one that could not connect.
func (g *healGate) failed(now time.Time) { g.next.Store(now.Add(time.Second).UnixNano()) }
