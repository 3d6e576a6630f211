package redis_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/redis"
)

type countingObserver struct{ retries, fastFails, heals atomic.Int64 }

func (o *countingObserver) Retry(string) { o.retries.Add(1) }
func (o *countingObserver) FastFail()    { o.fastFails.Add(1) }
func (o *countingObserver) Heal(string)  { o.heals.Add(1) }

// While a server is down its checks fail fast once the circuit opens, and
// the first probe after it is back closes the circuit again.
func TestCircuitBreaker(t *testing.T) {
	ctx := context.Background()
	obs := &countingObserver{}
	s := open(t, redis.Options{
		Addrs: []string{standalone.Addr}, Observer: obs,
		BreakAfter: 200 * time.Millisecond, ProbeEvery: 100 * time.Millisecond, HealAfter: -1,
		AttemptTimeout: 100 * time.Millisecond, Retries: -1,
	})
	lim := tollgate.New(s, tollgate.Options{})
	if err := standalone.Kill(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			standalone.Restart(context.Background())
		}
	}()
	var open bool
	for deadline := time.Now().Add(10 * time.Second); !open && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := lim.Consume(cctx, "k", 1, tollgate.PerSecond(5))
		cancel()
		if err == nil {
			t.Fatal("consume succeeded on a dead server")
		}
		open = errors.Is(err, redis.ErrCircuitOpen)
	}
	if !open || obs.fastFails.Load() == 0 {
		t.Fatalf("circuit never opened (fast fails %d)", obs.fastFails.Load())
	}
	if err := s.Ready(ctx); err == nil {
		t.Error("Ready with the server down")
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := standalone.Restart(rctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	for {
		cctx, ccancel := context.WithTimeout(rctx, time.Second)
		_, err := lim.Consume(cctx, "k", 1, tollgate.PerSecond(5))
		ccancel()
		if err == nil {
			break
		}
		if rctx.Err() != nil {
			t.Fatalf("no recovery: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Ready(ctx); err != nil {
		t.Errorf("not Ready after recovery: %v", err)
	}
}

func TestErrorKind(t *testing.T) {
	for err, want := range map[error]string{
		nil:                      "",
		redis.ErrCircuitOpen:     "circuit_open",
		context.DeadlineExceeded: "timeout",
		context.Canceled:         "canceled",
		errors.New("EOF"):        "conn",
	} {
		if got := redis.ErrorKind(err); got != want {
			t.Errorf("ErrorKind(%v) = %q, want %q", err, got, want)
		}
	}
	// A real reply error, from a server.
	s := open(t, redis.Options{Addrs: []string{standalone.Addr}})
	c := s.Client()
	err := c.Do(context.Background(), c.B().Arbitrary("NOSUCHCOMMAND").Build()).Error()
	if got := redis.ErrorKind(err); got != "other" {
		t.Errorf("ErrorKind(%v) = %q, want other", err, got)
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
	s := open(t, redis.Options{Addrs: []string{standalone.Addr}, Observer: obs})
	before := s.Client()
	s.HealNow("persistent_errors")
	select {
	case r := <-obs.reasons:
		if r != "persistent_errors" {
			t.Errorf("reason %q", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no heal")
	}
	if s.Client() == before {
		t.Fatal("client not replaced")
	}
	if _, err := tollgate.New(s, tollgate.Options{}).Consume(ctx, t.Name(), 1, tollgate.PerSecond(5)); err != nil {
		t.Fatalf("new client: %v", err)
	}
	s.HealNow("persistent_errors") // within the interval: refused
	select {
	case <-obs.reasons:
		t.Error("a second heal within the interval")
	case <-time.After(200 * time.Millisecond):
	}
}
