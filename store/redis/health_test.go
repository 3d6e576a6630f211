package redis_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/fakeclock"
	"github.com/tollgate/tollgate/store/redis"
)

type countingObserver struct {
	retries, fastFails, heals, moved, asks, refreshes, reconnects atomic.Int64
}

func (o *countingObserver) Retry(string) { o.retries.Add(1) }
func (o *countingObserver) FastFail()    { o.fastFails.Add(1) }
func (o *countingObserver) Heal(string)  { o.heals.Add(1) }
func (o *countingObserver) Redirect(kind string) {
	if kind == "moved" {
		o.moved.Add(1)
	} else {
		o.asks.Add(1)
	}
}
func (o *countingObserver) TopologyRefresh() { o.refreshes.Add(1) }
func (o *countingObserver) Reconnect()       { o.reconnects.Add(1) }

// While a server is down its checks fail fast once the circuit opens, and
// the first probe after it is back closes the circuit again. The breaker
// runs on a fake clock (Options.Now): the test sets when it opens and when
// a probe may pass, and waits in real time only for the server.
func TestCircuitBreaker(t *testing.T) {
	ctx := context.Background()
	obs := &countingObserver{}
	clk := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	const breakAfter, probeEvery = 200 * time.Millisecond, 100 * time.Millisecond
	s := open(t, redis.Options{
		Addrs: []string{standalone.Addr}, Observer: obs, Now: clk.Now,
		BreakAfter: breakAfter, ProbeEvery: probeEvery, HealAfter: -1,
		AttemptTimeout: 100 * time.Millisecond, Retries: -1,
	})
	lim := tollgate.New(s, tollgate.Options{})
	consume := func() error {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := lim.Consume(cctx, "k", 1, tollgate.PerSecond(5))
		return err
	}
	if err := standalone.Kill(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			standalone.Restart(context.Background())
		}
	}()
	// Failing, but for less than breakAfter: every call still tries.
	for range 3 {
		if err := consume(); err == nil || errors.Is(err, redis.ErrCircuitOpen) {
			t.Fatalf("a dead server's call, before breakAfter: %v, want a failure that tried", err)
		}
	}
	if err := s.Ready(ctx); err == nil || errors.Is(err, redis.ErrCircuitOpen) {
		t.Errorf("Ready with the server down: %v, want the server's error", err)
	}
	// breakAfter later: one probe tries, then the circuit fails fast.
	clk.Advance(breakAfter)
	if err := consume(); err == nil || errors.Is(err, redis.ErrCircuitOpen) {
		t.Fatalf("the probe: %v, want a failure that tried", err)
	}
	fast := obs.fastFails.Load()
	for range 3 {
		if err := consume(); !errors.Is(err, redis.ErrCircuitOpen) {
			t.Fatalf("open circuit: %v, want ErrCircuitOpen", err)
		}
	}
	if obs.fastFails.Load() != fast+3 {
		t.Errorf("fast fails %d, want %d", obs.fastFails.Load(), fast+3)
	}

	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := standalone.Restart(rctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	// Back, but the circuit is open until a probe may pass.
	if err := consume(); !errors.Is(err, redis.ErrCircuitOpen) {
		t.Fatalf("before the next probe: %v, want ErrCircuitOpen", err)
	}
	for {
		clk.Advance(probeEvery)
		err := consume()
		if err == nil {
			break
		}
		if rctx.Err() != nil {
			t.Fatalf("no recovery: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // the server, in real time
	}
	if err := consume(); err != nil {
		t.Errorf("after a probe passed: %v, want the circuit closed", err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Errorf("not Ready after recovery: %v", err)
	}
}

func TestKindOf(t *testing.T) {
	for err, want := range map[error]redis.Kind{
		nil:                  redis.KindNone,
		redis.ErrCircuitOpen: redis.KindCircuitOpen,
		fmt.Errorf("x: %w", redis.ErrNotReplicated): redis.KindNotReplicated,
		context.DeadlineExceeded:                    redis.KindTimeout,
		context.Canceled:                            redis.KindCanceled,
		errors.New("EOF"):                           redis.KindConn,
	} {
		if got := redis.KindOf(err); got != want {
			t.Errorf("KindOf(%v) = %v, want %v", err, got, want)
		}
	}
	// A real reply error, from a server.
	s := open(t, redis.Options{Addrs: []string{standalone.Addr}})
	c := s.Client()
	err := c.Do(context.Background(), c.B().Arbitrary("NOSUCHCOMMAND").Build()).Error()
	if got := redis.KindOf(err); got != redis.KindOther {
		t.Errorf("KindOf(%v) = %v, want other", err, got)
	}
	// Labels: one spelling, snake case, as metrics and the tools show them.
	for k, want := range map[redis.Kind]string{redis.KindNone: "", redis.KindCircuitOpen: "circuit_open",
		redis.KindNotReplicated: "not_replicated", redis.KindClusterDown: "clusterdown", redis.KindOther: "other", redis.Kind(200): "other"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
	for k, want := range map[redis.Kind]bool{redis.KindTimeout: false, redis.KindOther: false, redis.KindNoScript: false,
		redis.KindConn: true, redis.KindMoved: true, redis.KindCircuitOpen: true, redis.KindLoading: true} {
		if got := k.Unavailable(); got != want {
			t.Errorf("%v.Unavailable() = %t, want %t", k, got, want)
		}
	}
}

type healObserver struct {
	countingObserver
	reasons chan string
}

func (h *healObserver) Heal(reason string) { h.reasons <- reason }

// A heal swaps in a client built anew from the seeds; the gate allows one
// rebuild per interval.
func TestHealSwapsClient(t *testing.T) {
	ctx := context.Background()
	obs := &healObserver{reasons: make(chan string, 2)}
	clk := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	s := open(t, redis.Options{Addrs: []string{standalone.Addr}, Observer: obs, Now: clk.Now})
	before := s.Client()
	s.HealNow("persistent_errors")
	obs.waitHeal(t, "persistent_errors")
	if s.Client() == before {
		t.Fatal("client not replaced")
	}
	if _, err := tollgate.New(s, tollgate.Options{}).Consume(ctx, t.Name(), 1, tollgate.PerSecond(5)); err != nil {
		t.Fatalf("new client: %v", err)
	}
	s.HealNow("persistent_errors") // within the interval: refused
	clk.Advance(29 * time.Second)
	s.HealNow("persistent_errors") // still within it, by the store's clock
	select {
	case <-obs.reasons:
		t.Error("a second heal within the interval")
	case <-time.After(200 * time.Millisecond):
	}
	clk.Advance(10 * time.Second) // past 30 s and its jitter (at most 7.5 s)
	s.HealNow("persistent_errors")
	obs.waitHeal(t, "persistent_errors")
}

// waitHeal waits, at most 10 s, for a heal and checks its reason.
func (o *healObserver) waitHeal(t *testing.T, reason string) {
	t.Helper()
	select {
	case r := <-o.reasons:
		if r != reason {
			t.Errorf("heal reason %q, want %q", r, reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no heal")
	}
}

// The Observer sees what the client handles out of sight: the slot-map loads,
// a MOVED after a slot changed hands, and re-dials after connections died.
func TestObserverSeesRedirectsAndReconnects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	obs := &countingObserver{}
	s := open(t, redis.Options{Addrs: cluster.Addrs(), Cluster: true, Observer: obs})
	lim := tollgate.New(s, tollgate.Options{})
	key := t.Name() + time.Now().String()
	if _, err := lim.Consume(ctx, key, 1, tollgate.PerHour(10)); err != nil {
		t.Fatal(err)
	}
	if obs.refreshes.Load() == 0 {
		t.Error("no slot-map load seen")
	}

	// Move the key's slot to another master: the next call is redirected.
	sl := redis.KeySlot(s.Key(tollgate.StoreKey("", key)))
	owner, err := cluster.SlotOwner(ctx, sl)
	if err != nil {
		t.Fatal(err)
	}
	masters, err := cluster.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	to := masters[0]
	if to == owner {
		to = masters[1]
	}
	if err := cluster.MoveSlots(ctx, []int{sl}, to); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.MoveSlots(context.Background(), []int{sl}, owner) })
	if res, err := lim.Consume(ctx, key, 1, tollgate.PerHour(10)); err != nil || res.Used != 2 {
		t.Fatalf("after the move: %+v, %v", res, err)
	}
	if obs.moved.Load() == 0 {
		t.Error("no MOVED seen")
	}

	// Drop every client connection: the client dials again.
	for _, n := range cluster.Nodes() {
		if _, err := n.Do(ctx, "CLIENT", "KILL", "TYPE", "normal"); err != nil {
			t.Fatal(err)
		}
	}
	for obs.reconnects.Load() == 0 && ctx.Err() == nil {
		lim.Consume(ctx, key, 1, tollgate.PerHour(10))
		time.Sleep(20 * time.Millisecond)
	}
	if obs.reconnects.Load() == 0 {
		t.Error("no reconnect seen")
	}
}
