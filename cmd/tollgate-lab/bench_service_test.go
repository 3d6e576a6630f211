package main

import (
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bench"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/redis"
)

// BenchmarkServiceHTTP is the http row of `tollgate-lab bench --compare=http`
// as a Go benchmark, for a CPU profile of that path (-cpuprofile): 64
// callers check random keys of 10,000 through the service that
// --compare=http starts, on the memory store, or on the Redis Cluster whose
// loopback seed address TOLLGATE_BENCH_REDIS_CLUSTER gives.
func BenchmarkServiceHTTP(b *testing.B) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	defer mem.Close()
	var st tollgate.Store = mem
	if addr := os.Getenv("TOLLGATE_BENCH_REDIS_CLUSTER"); addr != "" {
		if err := bench.CheckLoopbackAddr(addr); err != nil {
			b.Fatal(err)
		}
		r, err := redis.New(ctx, redis.Options{Addrs: []string{addr}, Cluster: true})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		st = r
	}
	limit := tollgate.Limit{Units: 1_000_000_000, Window: time.Hour}
	target, stop, err := startBenchService(ctx, st, limit, 64, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := stop(); err != nil {
			b.Error(err)
		}
	}()
	prefix := "bench-svc-" + strconv.FormatUint(rand.Uint64()>>24, 36) + "-"
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0))) // 64 callers
	b.ResetTimer()
	start := time.Now()
	var errs atomic.Int64 // such as 503 when the store misses serve's check timeout
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := target.Check(ctx, prefix+strconv.Itoa(rand.IntN(10_000)), 1); err != nil {
				errs.Add(1)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
	b.ReportMetric(float64(errs.Load()), "errors")
	if errs.Load() == int64(b.N) {
		b.Error("every check failed")
	}
	b.StopTimer()
	lim := tollgate.New(st, tollgate.Options{})
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			for i := w; i < 10_000; i += 64 {
				_ = lim.Reset(ctx, prefix+strconv.Itoa(i))
			}
		})
	}
	wg.Wait()
}
