package memory_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/memory"
)

// Benchmarks report figures, never assert timings; see BENCHMARKS.md.

// benchKeys is how many keys a benchmark spreads its checks over, at random.
const benchKeys = 10_000

var algorithms = []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA}

func benchKeyNames() []string {
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	return keys
}

// BenchmarkConsume measures Consume of cost 1, all allowed, from
// GOMAXPROCS goroutines over benchKeys keys. The limit, 10^9 units per
// second, admits everything; its one-second window keeps a sliding log
// bounded at a second's worth of entries, so the figures include expiring
// them.
func BenchmarkConsume(b *testing.B) {
	for _, a := range algorithms {
		b.Run(a.String(), func(b *testing.B) {
			limit := tollgate.Limit{Units: 1_000_000_000, Window: time.Second, Algorithm: a}
			run(b, limit, nil, true)
		})
	}
}

// BenchmarkConsumeDenied measures Consume of cost 1 on keys whose limit
// (10 per hour) is used up, so every check is denied and computes
// RetryAfter.
func BenchmarkConsumeDenied(b *testing.B) {
	for _, a := range algorithms {
		b.Run(a.String(), func(b *testing.B) {
			limit := tollgate.Limit{Units: 10, Window: time.Hour, Algorithm: a}
			run(b, limit, func(lim *tollgate.Limiter, key string) error {
				_, err := lim.Consume(context.Background(), key, limit.Units, limit)
				return err
			}, false)
		})
	}
}

// run measures b.N Consumes of cost 1 under limit on a fresh store, after
// calling fill (if any) once per key, and reports checks/s. Every check must
// succeed and be allowed (or, with wantAllowed false, denied).
func run(b *testing.B, limit tollgate.Limit, fill func(lim *tollgate.Limiter, key string) error, wantAllowed bool) {
	s := memory.New(memory.Options{})
	defer s.Close()
	lim := tollgate.New(s, tollgate.Options{})
	keys := benchKeyNames()
	if fill != nil {
		for _, k := range keys {
			if err := fill(lim, k); err != nil {
				b.Fatal(err)
			}
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := lim.Consume(ctx, keys[rand.IntN(len(keys))], 1, limit)
			if err != nil || res.Allowed != wantAllowed {
				b.Errorf("Consume: %+v, %v (want allowed %t)", res, err, wantAllowed)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
}
