package redis_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/faultproxy"
	"github.com/tollgate/tollgate/store/redis"
)

// A consume whose attempt times out while the server is busy may still run
// later; its retry carries the same request id and is then answered as a
// repeat, so the units count once. Without ids the store does not retry it
// and reports the failure; the units count at most once.
func TestTimedOutConsumeCountsOnce(t *testing.T) {
	for _, tc := range []struct {
		name    string
		noIDs   bool
		wantErr bool
	}{
		{"WithRequestIDs", false, false},
		{"WithoutRequestIDs", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t, redis.Options{
				Addrs:          []string{standalone.Addr},
				AttemptTimeout: 100 * time.Millisecond,
				Retries:        20,
				NoRequestIDs:   tc.noIDs,
			})
			lim := tollgate.New(s, tollgate.Options{})
			limit := tollgate.PerHour(100)
			// Rounds: whether a timed-out attempt still runs depends on the
			// client's pipelining state, so give the case a few chances.
			for round := range 3 {
				key := fmt.Sprint(t.Name(), time.Now().UnixNano(), round)
				if _, err := lim.Consume(ctx, key, 1, limit); err != nil { // warm: script loaded, connection up
					t.Fatal(err)
				}

				// The server sleeps 600 ms; the consume's first attempts time out
				// in the meantime, queued behind the sleep.
				slept := make(chan error, 1)
				go func() {
					_, err := standalone.Do(ctx, "DEBUG", "SLEEP", "0.6")
					slept <- err
				}()
				time.Sleep(50 * time.Millisecond) // let DEBUG SLEEP start first
				// Calls in flight on the same connection put it in pipelining
				// mode, where a timed-out command stays queued on the server:
				// the case where a blind retry would count twice.
				var busy sync.WaitGroup
				for i := range 4 {
					busy.Add(1)
					go func() {
						defer busy.Done()
						bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
						defer cancel()
						lim.Peek(bctx, fmt.Sprint(key, i), limit)
					}()
				}
				time.Sleep(10 * time.Millisecond)
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				res, err := lim.Consume(cctx, key, 7, limit)
				cancel()
				busy.Wait()
				if serr := <-slept; serr != nil {
					t.Fatal(serr)
				}
				if tc.wantErr {
					if !errors.Is(err, tollgate.ErrUnavailable) {
						t.Fatalf("got %+v, %v; want ErrUnavailable", res, err)
					}
				} else if err != nil || !res.Allowed || res.Used != 8 {
					t.Fatalf("got %+v, %v; want allowed with 8 used", res, err)
				}
				// Whatever the caller saw, the 7 units count exactly once.
				var used int64
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					if p, err := lim.Peek(ctx, key, limit); err == nil {
						used = p.Used
						break
					}
				}
				switch {
				case used == 8:
				case used == 1 && tc.wantErr: // the failed consume never ran
				default:
					t.Errorf("round %d: used %d: the consume of 7 counted %d times", round, used, (used-1)/7)
				}
			}
		})
	}
}

// AddressMap sends an announced address to where the node really is.
func TestAddressMap(t *testing.T) {
	const announced = "127.0.0.99:1" // nothing listens there
	s := open(t, redis.Options{
		Addrs:        []string{announced},
		AddressMap:   map[string]string{announced: standalone.Addr},
		ConnsPerNode: 4,
	})
	res, err := tollgate.New(s, tollgate.Options{}).Consume(context.Background(), t.Name(), 1, tollgate.PerSecond(5))
	if err != nil || !res.Allowed {
		t.Fatalf("got %+v, %v", res, err)
	}
}

// With WaitReplicas every consume is acknowledged by a WAIT after it on its
// connection, and concurrent consumes share WAITs (the group commit): 64
// callers making 640 consumes send fewer WAITs than consumes, and every
// unit is counted once.
func TestWaitReplicas(t *testing.T) {
	ctx := context.Background()
	waits := func() (n int64) {
		for _, node := range cluster.Nodes() {
			v, err := node.Do(ctx, "INFO", "commandstats")
			if err != nil {
				t.Fatal(err)
			}
			s, _ := v.(string)
			if i := strings.Index(s, "cmdstat_wait:calls="); i >= 0 {
				var c int64
				fmt.Sscanf(s[i+len("cmdstat_wait:calls="):], "%d", &c)
				n += c
			}
		}
		return n
	}
	s := open(t, redis.Options{Addrs: cluster.Addrs(), Cluster: true, WaitReplicas: 1, WaitTimeout: time.Second})
	lim := tollgate.New(s, tollgate.Options{})
	for _, tc := range []struct {
		name           string
		callers, each  int
		wantFewerWaits bool
	}{
		{"one at a time", 1, 5, false},
		{"64 at once", 64, 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := waits()
			run := fmt.Sprint(t.Name(), time.Now().UnixNano()) // keys of this run alone (-count)
			var wg sync.WaitGroup
			for c := range tc.callers {
				wg.Go(func() {
					for i := range tc.each {
						key := fmt.Sprint(run, c%8)
						if res, err := lim.Consume(ctx, key, 1, tollgate.PerHour(1000)); err != nil || !res.Allowed {
							t.Errorf("consume %d of caller %d: %+v, %v", i, c, res, err)
						}
					}
				})
			}
			wg.Wait()
			consumes := int64(tc.callers * tc.each)
			got := waits() - before
			t.Logf("%d WAITs for %d consumes", got, consumes)
			if got == 0 || !tc.wantFewerWaits && got < consumes || tc.wantFewerWaits && got >= consumes {
				t.Errorf("%d WAITs for %d consumes", got, consumes)
			}
			var used int64
			for k := range min(tc.callers, 8) {
				res, err := lim.Peek(ctx, fmt.Sprint(run, k), tollgate.PerHour(1000))
				if err != nil {
					t.Fatal(err)
				}
				used += res.Used
			}
			if used != consumes {
				t.Errorf("%d units counted for %d consumes", used, consumes)
			}
		})
	}
}

// A master without the replicas asked for: a call's WAIT ends before the
// call's deadline, even when WaitTimeout is longer, and the call fails with
// ErrNotReplicated (the units are counted on the master); calls at once
// all get that answer, or succeed; and soon the store stops
// waiting on that master, so calls succeed again, unprotected.
func TestWaitWithoutReplicas(t *testing.T) {
	ctx := context.Background()
	lim := tollgate.PerHour(1000)
	// The standalone server has no replica.
	long := tollgate.New(open(t, redis.Options{Addrs: []string{standalone.Addr}, WaitReplicas: 1, WaitTimeout: time.Hour}), tollgate.Options{})
	_, err := long.Consume(ctx, t.Name()+"long", 1, lim)
	if !errors.Is(err, redis.ErrNotReplicated) || !errors.Is(err, tollgate.ErrUnavailable) {
		t.Fatalf("WAIT past the deadline: got %v, want ErrNotReplicated", err)
	}
	if res, err := long.Peek(ctx, t.Name()+"long", lim); err != nil || res.Used != 1 {
		t.Errorf("the master counted %+v, %v; want 1 unit", res, err)
	}

	l := tollgate.New(open(t, redis.Options{Addrs: []string{standalone.Addr}, WaitReplicas: 1, WaitTimeout: 200 * time.Millisecond, AttemptTimeout: 5 * time.Second}), tollgate.Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range cap(errs) {
		wg.Go(func() {
			_, err := l.Consume(ctx, fmt.Sprint(t.Name(), i), 1, lim)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, redis.ErrNotReplicated) {
			t.Fatalf("got %v, want success or ErrNotReplicated", err)
		}
	}
	// Waiting stops once the store has counted no replica.
	for i := 0; ; i++ {
		_, err := l.Consume(ctx, t.Name()+"after", 1, lim)
		if err == nil {
			break
		}
		if !errors.Is(err, redis.ErrNotReplicated) || i == 50 {
			t.Fatalf("call %d: %v; want success once the missing replica is known", i, err)
		}
	}
}

// A node that stops answering (black-holed, not closed) leaves the calls
// that gave up on it running in the background; at most MaxInFlight of
// them, so goroutines do not pile up, and past it calls fail at once with
// ErrOverloaded. Once the node answers again the store serves.
func TestBlackHoleGoroutinesBounded(t *testing.T) {
	ctx := context.Background()
	proxy, err := faultproxy.New("127.0.0.1:0", standalone.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	const maxInFlight = 16
	s := open(t, redis.Options{Addrs: []string{proxy.Addr()}, MaxInFlight: maxInFlight,
		AttemptTimeout: 50 * time.Millisecond, Retries: -1, BreakAfter: -1, HealAfter: -1})
	lim := tollgate.New(s, tollgate.Options{})
	if _, err := lim.Consume(ctx, t.Name(), 1, tollgate.PerHour(1000)); err != nil {
		t.Fatal(err)
	}
	defer proxy.SetMode(faultproxy.Forward)
	proxy.SetMode(faultproxy.BlackHole)
	base := runtime.NumGoroutine()
	var overloaded, failed atomic.Int64
	var wg sync.WaitGroup
	for w := range 64 { // 64 callers × 10 calls, each within 100 ms
		wg.Go(func() {
			for i := range 10 {
				cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
				_, err := lim.Consume(cctx, fmt.Sprint(t.Name(), w, i), 1, tollgate.PerHour(1000))
				cancel()
				switch {
				case errors.Is(err, redis.ErrOverloaded):
					overloaded.Add(1)
				case err != nil:
					failed.Add(1)
				default:
					t.Errorf("a call through the black hole succeeded")
				}
			}
		})
	}
	wg.Wait()
	left := runtime.NumGoroutine()
	t.Logf("black hole: %d calls failed at their deadline, %d at once (overloaded); goroutines %d before, %d after every call returned (MaxInFlight %d)",
		failed.Load(), overloaded.Load(), base, left, maxInFlight)
	if overloaded.Load() == 0 {
		t.Error("no call was refused: the bound was never reached")
	}
	// What is left must not grow with the 640 calls: at most the bound,
	// plus the client's own goroutines for its connections.
	if left > base+maxInFlight+60 {
		t.Errorf("%d goroutines left behind, want at most %d + %d + 60", left, base, maxInFlight)
	}
	proxy.SetMode(faultproxy.Forward)
	for end := time.Now().Add(15 * time.Second); ; {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := lim.Consume(cctx, t.Name(), 1, tollgate.PerHour(1000))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("not serving after the black hole: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
