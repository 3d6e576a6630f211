package redis_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/seed"
	"github.com/tollgate/tollgate/store/redis"
)

// newSeedClient connects to Redis with the client options redis.New uses,
// so that the seed (package internal/seed, the home-grown limiter Tollgate
// replaces) and Tollgate are measured on equal terms.
func newSeedClient(t testing.TB, opts redis.Options) rueidis.Client {
	t.Helper()
	c, err := seed.NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// The seed loses units when one key gets two requests in the same
// millisecond, and overshoots its limit under concurrency; Tollgate does
// neither.
func TestSeedLosesUnitsInSameMillisecond(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := redis.Options{Addrs: cluster.Addrs(), Cluster: true}
	store := open(t, opts)
	sd := seed.Limiter{Client: newSeedClient(t, opts), Prefix: "seed:"}
	run := strconv.FormatInt(time.Now().UnixNano(), 36) // fresh keys per run
	const window = time.Hour
	limit := tollgate.Limit{Units: 100, Window: window}
	now := time.Now()

	t.Run("same millisecond", func(t *testing.T) {
		key := run + "-same-ms"
		for range 2 {
			ok, err := sd.Consume(ctx, key, 3, limit.Units, window, now)
			if err != nil || !ok {
				t.Fatalf("seed consume: allowed %t, %v", ok, err)
			}
		}
		n, err := sd.Card(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if n != 3 {
			t.Fatalf("seed: ZCARD = %d after two consumes of 3 in one millisecond, want 3 (the lost-units flaw)", n)
		}
		t.Logf("seed: two consumes of 3 in one millisecond left %d members: %d units lost", n, 6-n)

		lim := tollgate.New(store, tollgate.Options{Now: func() time.Time { return now }})
		var res tollgate.Result
		for range 2 {
			if res, err = lim.Consume(ctx, key, 3, limit); err != nil || !res.Allowed {
				t.Fatalf("tollgate consume: %+v, %v", res, err)
			}
		}
		if res.Used != 6 {
			t.Errorf("tollgate, same instant: Used = %d, want 6", res.Used)
		}
	})

	t.Run("concurrent, server clock", func(t *testing.T) {
		key := run + "-concurrent"
		lim := tollgate.New(store, tollgate.Options{})
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for range 2 {
			wg.Go(func() {
				res, err := lim.Consume(ctx, key, 3, limit)
				if err == nil && !res.Allowed {
					err = fmt.Errorf("denied: %+v", res)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		res, err := lim.Peek(ctx, key, limit)
		if err != nil {
			t.Fatal(err)
		}
		if res.Used != 6 {
			t.Errorf("tollgate, concurrent: Used = %d, want 6", res.Used)
		}
	})

	t.Run("overshoot", func(t *testing.T) {
		const (
			callers = 16
			units   = 5
			rounds  = 5
		)
		lim := tollgate.New(store, tollgate.Options{})
		limit := tollgate.Limit{Units: units, Window: window}
		maxSeed := 0
		for r := range rounds {
			key := fmt.Sprintf("%s-overshoot-%d", run, r)
			seedAllowed := burst(t, callers, func() (bool, error) {
				return sd.Consume(ctx, key, 1, units, window, time.Now())
			})
			tgAllowed := burst(t, callers, func() (bool, error) {
				res, err := lim.Consume(ctx, key, 1, limit)
				return res.Allowed, err
			})
			if tgAllowed != units {
				t.Errorf("round %d: tollgate allowed %d of %d concurrent calls, want exactly %d", r, tgAllowed, callers, units)
			}
			members, err := sd.Card(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("round %d: %d concurrent calls, limit %d: seed allowed %d (set holds %d), tollgate allowed %d",
				r, callers, units, seedAllowed, members, tgAllowed)
			maxSeed = max(maxSeed, seedAllowed)
		}
		t.Logf("seed: worst overshoot over %d rounds: %d allowed for a limit of %d (+%d)", rounds, maxSeed, units, maxSeed-units)
	})
}

// burst runs n calls of f at once, released together from a barrier, and
// counts the allowed ones. Errors fail the test.
func burst(t *testing.T, n int, f func() (bool, error)) int {
	t.Helper()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		allowed  int
		firstErr error
	)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			ok, err := f()
			mu.Lock()
			defer mu.Unlock()
			if ok {
				allowed++
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	close(start)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	return allowed
}
