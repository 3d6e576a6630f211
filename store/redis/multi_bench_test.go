package redis_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bench"
	"github.com/tollgate/tollgate/store/redis"
)

// TestMultiLimitCost measures, in one run on the package's Cluster, a check
// of three limits of one key (10/s GCRA burst, 1,000/hour sliding log,
// 20,000/day sliding window: one script run) against a check of the
// one-hour sliding log alone: checks per second with 64 callers on 10,000
// keys, and the CPU time of every Redis node per check. Figures are logged,
// never asserted. It is skipped unless TOLLGATE_BENCH_MULTI=1:
//
//	TOLLGATE_BENCH_MULTI=1 go test -run TestMultiLimitCost -v ./store/redis/
func TestMultiLimitCost(t *testing.T) {
	if os.Getenv("TOLLGATE_BENCH_MULTI") != "1" {
		t.Skip("set TOLLGATE_BENCH_MULTI=1 to measure")
	}
	opts := redis.Options{Addrs: cluster.Addrs(), Cluster: true}
	s := open(t, opts)
	cpu, closeCPU, err := bench.RedisCPU(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer closeCPU()
	lim := tollgate.New(s, tollgate.Options{})
	hourly := tollgate.Limit{Units: 1000, Window: time.Hour}
	sets := []struct {
		name   string
		limits []tollgate.Limit
	}{
		{"1 limit (1,000/h sliding log)", []tollgate.Limit{hourly}},
		{"3 limits (10/s gcra, 1,000/h log, 20,000/day window)", []tollgate.Limit{
			{Units: 10, Window: time.Second, Algorithm: tollgate.GCRA}, hourly,
			{Units: 20000, Window: 24 * time.Hour, Algorithm: tollgate.SlidingWindow}}},
	}
	const callers, keys, checks = 64, 10_000, 40_000
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for round := range 2 { // twice each, interleaved, for the noise
		for _, set := range sets {
			prefix := fmt.Sprintf("multi-%d-%d-%d/", round, len(set.limits), time.Now().UnixNano())
			var next, errs atomic.Int64
			cpu0, err := cpu(ctx)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			var wg sync.WaitGroup
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > checks || ctx.Err() != nil {
							return
						}
						if _, err := lim.ConsumeAll(ctx, fmt.Sprint(prefix, i%keys), 1, set.limits...); err != nil {
							errs.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			cpu1, err := cpu(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%-55s %8.0f checks/s, Redis CPU %5.1f µs/check, errors %d",
				set.name, float64(checks)/elapsed.Seconds(), float64((cpu1-cpu0).Microseconds())/checks, errs.Load())
			for i := range keys {
				_ = lim.Reset(ctx, fmt.Sprint(prefix, i))
			}
		}
	}
}
