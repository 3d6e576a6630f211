package bench_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bench"
	"github.com/tollgate/tollgate/internal/testcluster"
	"github.com/tollgate/tollgate/store/redis"
)

// TestCapacity measures the figures of docs/capacity.md: Redis CPU per check
// (split between masters and replicas) by algorithm, cost and op on 3
// masters; the same sliding-log load on 1, 2 and 3 masters (linearity); a
// consume that waits for a replica (WAIT); and memory per key after 20
// requests in the window. It starts its own clusters (1 replica per master)
// and prints a table; it asserts no figure. Off unless asked for:
//
//	TOLLGATE_BENCH_CAPACITY=1 go test -run TestCapacity -v -count 1 -timeout 20m ./internal/bench/
//
// TOLLGATE_BENCH_SECONDS sets each row's duration (default 5). Every row is
// bounded by its duration and by 2,000,000 checks.
func TestCapacity(t *testing.T) {
	if os.Getenv("TOLLGATE_BENCH_CAPACITY") == "" {
		t.Skip("set TOLLGATE_BENCH_CAPACITY=1 to measure the capacity figures")
	}
	needCluster(t) // redis-server is installed
	secs, _ := strconv.Atoi(os.Getenv("TOLLGATE_BENCH_SECONDS"))
	if secs <= 0 {
		secs = 5
	}
	load := bench.Config{Keys: 10_000, Concurrency: 64, Duration: time.Duration(secs) * time.Second, Count: 2_000_000}
	var out strings.Builder
	tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "masters\trow\tchecks/s\tallowed\tredis cpu/check\tmasters' share\treplicas' share\tcpu/check (Go)\t")
	row := func(masters int, name string, c *testcluster.Cluster, target bench.Target, cfg bench.Config) {
		t.Helper()
		ctx := t.Context()
		m0, r0 := nodeCPU(t, ctx, c)
		r, err := bench.Run(ctx, name, target, cfg)
		if err != nil {
			t.Fatal(err)
		}
		m1, r1 := nodeCPU(t, ctx, c)
		if r.Errors > 0 {
			t.Errorf("%s: %d errors: %v", name, r.Errors, r.ErrorSamples)
		}
		n := time.Duration(max(r.Checks, 1))
		fmt.Fprintf(tw, "%d\t%s\t%.0f\t%.1f%%\t%.1fµs\t%.1fµs\t%.1fµs\t%.1fµs\t\n", masters, name, r.ChecksPerSec,
			100*float64(r.Allowed)/float64(max(r.Checks, 1)), us((m1-m0+r1-r0)/n), us((m1-m0)/n), us((r1-r0)/n), us(r.ClientCPU))
	}

	for _, masters := range []int{1, 2, 3} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
		c, err := testcluster.Start(ctx, testcluster.Options{Masters: masters})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		opts := redis.Options{Addrs: c.Addrs(), Cluster: true}
		st, err := redis.New(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		lim := tollgate.New(st, tollgate.Options{})
		logLimit := tollgate.Limit{Units: 1_000_000, Window: time.Hour}
		row(masters, "sliding_log cost 1", c, bench.Library{Limiter: lim, Limit: logLimit}, load)
		if masters == 3 {
			for _, a := range []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA} {
				for _, cost := range []int64{1, 10} {
					if a == tollgate.SlidingLog && cost == 1 {
						continue // the row above
					}
					cfg := load
					cfg.Cost, _ = bench.ParseCost(strconv.FormatInt(cost, 10))
					row(masters, fmt.Sprintf("%s cost %d", a, cost), c, bench.Library{Limiter: lim, Limit: tollgate.Limit{Units: 1_000_000, Window: time.Hour, Algorithm: a}}, cfg)
				}
			}
			// Denied: a limit of 1 per hour on 1,000 keys, so that all but
			// each key's first check are denied.
			deny := load
			deny.Keys = 1000
			row(masters, "sliding_log denied", c, bench.Library{Limiter: lim, Limit: tollgate.Limit{Units: 1, Window: time.Hour}}, deny)
			// Peek: reads only.
			peek := funcTarget(func(ctx context.Context, key string, _ int64) (bool, error) {
				res, err := lim.Peek(ctx, key, logLimit)
				return res.Allowed, err
			})
			row(masters, "sliding_log peek", c, peek, load)
			// A consume that waits for its replica (Redis WAIT).
			wst, err := redis.New(ctx, redis.Options{Addrs: c.Addrs(), Cluster: true, WaitReplicas: 1})
			if err != nil {
				t.Fatal(err)
			}
			row(masters, "sliding_log cost 1, WAIT 1 replica", c, bench.Library{Limiter: tollgate.New(wst, tollgate.Options{}), Limit: logLimit}, load)
			wst.Close()
			memoryPerKey(t, ctx, c, st)
		}
		st.Close()
		c.Stop()
		cancel()
	}
	_ = tw.Flush()
	t.Logf("\n%s", out.String())
}

// memoryPerKey logs MEMORY USAGE of a key's state after 20 consumes within
// the window, for each algorithm: the hash and log, and the request ids
// (which live for the dedupe window only).
func memoryPerKey(t *testing.T, ctx context.Context, c *testcluster.Cluster, st *redis.Store) {
	t.Helper()
	lim := tollgate.New(st, tollgate.Options{})
	for _, a := range []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA} {
		limit := tollgate.Limit{Units: 20, Window: time.Hour, Algorithm: a}
		key := "cap-mem-" + a.String()
		for range 20 {
			if res, err := lim.Consume(ctx, key, 1, limit); err != nil || !res.Allowed {
				t.Fatalf("%s: %+v, %v", key, res, err)
			}
		}
		var state, ids int64
		keys := st.Keys(tollgate.StoreKey("", key), limit)
		for i, k := range keys {
			v, err := clusterDo(ctx, c, k, "MEMORY", "USAGE", k, "SAMPLES", "0")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := v.(int64)
			if i == 1 {
				ids += b
			} else {
				state += b
			}
		}
		t.Logf("memory after 20 requests of cost 1 within the window, %s: %d B of state (hash%s), %d B of request ids (gone after the dedupe window)",
			a, state, map[bool]string{true: " and log", false: ""}[a == tollgate.SlidingLog], ids)
		if err := st.Reset(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
}

// clusterDo runs a command of key on the master that holds it.
func clusterDo(ctx context.Context, c *testcluster.Cluster, key string, args ...any) (any, error) {
	masters, err := c.Masters(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range masters {
		if v, err := m.Do(ctx, "EXISTS", key); err == nil && v == int64(1) {
			return m.Do(ctx, args...)
		}
	}
	return int64(0), nil
}

// nodeCPU returns the CPU time the masters and the replicas of c have used.
func nodeCPU(t *testing.T, ctx context.Context, c *testcluster.Cluster) (masters, replicas time.Duration) {
	t.Helper()
	for _, n := range c.Nodes() {
		info, err := n.Do(ctx, "INFO", "cpu")
		if err != nil {
			t.Fatal(err)
		}
		s, _ := info.(string)
		cpu, err := bench.ParseInfoCPU(s)
		if err != nil {
			t.Fatal(err)
		}
		role, err := n.Role(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if role == testcluster.RoleMaster {
			masters += cpu
		} else {
			replicas += cpu
		}
	}
	return masters, replicas
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
