package redis_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bench"
	"github.com/tollgate/tollgate/internal/seed"
	"github.com/tollgate/tollgate/internal/testcluster"
	"github.com/tollgate/tollgate/store/redis"
)

// Benchmarks report figures, never assert timings. See BENCHMARKS.md for the
// commands and the figures of a run. Each benchmark invocation uses fresh
// keys and deletes them afterwards, so runs do not inherit each other's
// state.

const (
	// benchKeys is how many keys a benchmark spreads its checks over, at
	// random.
	benchKeys = 10_000
	// benchCallers is about how many goroutines call at once. The client
	// auto-pipelines concurrent calls, so throughput needs many callers.
	benchCallers = 64
)

// benchLimit admits every check of a benchmark: 10^6 units per hour per key
// is far more than a run consumes.
func benchLimit(a tollgate.Algorithm) tollgate.Limit {
	return tollgate.Limit{Units: 1_000_000, Window: time.Hour, Algorithm: a}
}

var algorithms = []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA}

// benchRun numbers benchmark invocations, to give each fresh keys.
var benchRun atomic.Int64

// freshKeys returns benchKeys keys no earlier invocation used.
func freshKeys() []string {
	run := benchRun.Add(1)
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("b%s.%d-%d", tag, run, i)
	}
	return keys
}

// BenchmarkConsume measures Consume of cost 1, all allowed, from about
// benchCallers goroutines over benchKeys keys.
func BenchmarkConsume(b *testing.B) {
	for _, tg := range targets() {
		b.Run(tg.name, func(b *testing.B) {
			store := open(b, tg.opts)
			admin := newSeedClient(b, tg.opts)
			nodes := nodesOf(tg.name)
			lim := tollgate.New(store, tollgate.Options{})
			for _, a := range algorithms {
				b.Run(a.String(), func(b *testing.B) {
					limit := benchLimit(a)
					keys := freshKeys()
					defer deleteTollgateKeys(b, admin, store, keys)
					measure(b, nodes, keys, func(ctx context.Context, key string) (bool, error) {
						res, err := lim.Consume(ctx, key, 1, limit)
						return res.Allowed, err
					}, true)
				})
			}
		})
	}
}

// BenchmarkConsumeDenied measures Consume of cost 1 on keys whose limit is
// used up, so every check is denied (and computes RetryAfter).
func BenchmarkConsumeDenied(b *testing.B) {
	for _, tg := range targets() {
		b.Run(tg.name, func(b *testing.B) {
			store := open(b, tg.opts)
			admin := newSeedClient(b, tg.opts)
			nodes := nodesOf(tg.name)
			lim := tollgate.New(store, tollgate.Options{})
			for _, a := range algorithms {
				b.Run(a.String(), func(b *testing.B) {
					limit := tollgate.Limit{Units: 10, Window: time.Hour, Algorithm: a}
					keys := freshKeys()
					defer deleteTollgateKeys(b, admin, store, keys)
					fill(b, keys, func(ctx context.Context, key string) error {
						_, err := lim.Consume(ctx, key, limit.Units, limit)
						return err
					})
					measure(b, nodes, keys, func(ctx context.Context, key string) (bool, error) {
						res, err := lim.Consume(ctx, key, 1, limit)
						return res.Allowed, err
					}, false)
				})
			}
		})
	}
}

// BenchmarkVsSeed runs the same workload through Tollgate's sliding log and
// through the seed's two-transaction pattern: same client options, callers,
// keys and limit (10^6 units per hour, so the seed writes cost members per
// check). The two run back to back for each cost: compare them within one
// process, and run several processes with -count 1 (see BENCHMARKS.md) so
// that they alternate rather than -count repeating each in a row.
func BenchmarkVsSeed(b *testing.B) {
	opts := redis.Options{Addrs: cluster.Addrs(), Cluster: true}
	store := open(b, opts)
	admin := newSeedClient(b, opts)
	sd := seed.Limiter{Client: newSeedClient(b, opts), Prefix: "seed:"}
	nodes := cluster.Nodes()
	lim := tollgate.New(store, tollgate.Options{})
	limit := benchLimit(tollgate.SlidingLog)
	b.Run("Cluster", func(b *testing.B) {
		for _, cost := range []int64{1, 10} {
			b.Run(fmt.Sprintf("cost=%d", cost), func(b *testing.B) {
				b.Run("tollgate", func(b *testing.B) {
					keys := freshKeys()
					defer deleteTollgateKeys(b, admin, store, keys)
					measure(b, nodes, keys, func(ctx context.Context, key string) (bool, error) {
						res, err := lim.Consume(ctx, key, cost, limit)
						return res.Allowed, err
					}, true)
				})
				b.Run("seed", func(b *testing.B) {
					keys := freshKeys()
					defer deleteKeys(b, admin, keys, sd.Key)
					measure(b, nodes, keys, func(ctx context.Context, key string) (bool, error) {
						return sd.Consume(ctx, key, cost, limit.Units, limit.Window, time.Now())
					}, true)
				})
			})
		}
	})
}

// measure runs check b.N times from about benchCallers goroutines, each call
// on a random one of keys, and reports checks/s and the p50 and p99 latency
// of one call. Every call must succeed and be allowed (or, with
// wantAllowed false, denied); anything else fails the benchmark, since the
// figures would not measure the intended path.
func measure(b *testing.B, nodes []*testcluster.Node, keys []string, check func(ctx context.Context, key string) (bool, error), wantAllowed bool) {
	ctx := context.Background()
	srv0, cli0 := serverCPU(b, nodes), clientCPU()
	b.SetParallelism(max(1, benchCallers/runtime.GOMAXPROCS(0)))
	var (
		mu       sync.Mutex
		all      bench.Histogram
		firstErr error
		wrong    atomic.Int64
	)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		h := new(bench.Histogram)
		defer func() {
			mu.Lock()
			all.Merge(h)
			mu.Unlock()
		}()
		for pb.Next() {
			key := keys[rand.IntN(len(keys))]
			start := time.Now()
			allowed, err := check(ctx, key)
			h.Record(time.Since(start))
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
			if allowed != wantAllowed {
				wrong.Add(1)
			}
		}
	})
	b.StopTimer()
	srv, cli := serverCPU(b, nodes)-srv0, clientCPU()-cli0
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	if n := wrong.Load(); n > 0 {
		b.Fatalf("%d of %d checks had allowed != %t", n, b.N, wantAllowed)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
	b.ReportMetric(all.Quantile(0.50).Seconds()*1e6, "p50-µs")
	b.ReportMetric(all.Quantile(0.99).Seconds()*1e6, "p99-µs")
	b.ReportMetric(srv.Seconds()*1e6/float64(b.N), "srv-cpu-µs/op")
	if cli0 >= 0 {
		b.ReportMetric(cli.Seconds()*1e6/float64(b.N), "cli-cpu-µs/op")
	}
}

// nodesOf returns the redis-server processes of a target of targets().
func nodesOf(target string) []*testcluster.Node {
	if target == "Standalone" {
		return []*testcluster.Node{standalone.Node}
	}
	return cluster.Nodes()
}

// serverCPU is the CPU time (user + system) nodes have used so far, from
// INFO cpu: for a Cluster, masters and replicas, which re-apply every write
// on the same cores.
func serverCPU(b testing.TB, nodes []*testcluster.Node) time.Duration {
	var sum float64
	for _, n := range nodes {
		v, err := n.Do(context.Background(), "INFO", "cpu")
		if err != nil {
			b.Fatal(err)
		}
		info, _ := v.(string)
		for line := range strings.Lines(info) {
			name, val, _ := strings.Cut(strings.TrimSpace(line), ":")
			if name == "used_cpu_user" || name == "used_cpu_sys" {
				f, err := strconv.ParseFloat(val, 64)
				if err != nil {
					b.Fatalf("%s: INFO cpu %s: %v", n.Addr, line, err)
				}
				sum += f
			}
		}
	}
	return time.Duration(sum * float64(time.Second))
}

// clientCPU is the CPU time (user + system) this process has used so far,
// from /proc/self/stat (clock ticks of 10 ms), or -1 where that is missing.
func clientCPU() time.Duration {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return -1
	}
	// Fields after the command name, which is in parentheses: state is
	// field 3, utime 14 and stime 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return -1
	}
	user, err1 := strconv.ParseInt(f[11], 10, 64)
	sys, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(user+sys) * 10 * time.Millisecond
}

// fill runs f once for every key, benchCallers at a time, untimed.
func fill(b *testing.B, keys []string, f func(ctx context.Context, key string) error) {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	ctx := context.Background()
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		errs = make(chan error, benchCallers)
	)
	for range benchCallers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(keys) {
					errs <- nil
					return
				}
				if err := f(ctx, keys[i]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

// deleteTollgateKeys deletes every Redis key of keys in store, untimed.
func deleteTollgateKeys(b *testing.B, admin rueidis.Client, store *redis.Store, keys []string) {
	var limits []tollgate.Limit
	for _, a := range algorithms {
		limits = append(limits, benchLimit(a))
	}
	var names []func(string) string
	for i := range store.Keys("", limits...) {
		names = append(names, func(k string) string { return store.Keys(tollgate.StoreKey("", k), limits...)[i] })
	}
	deleteKeys(b, admin, keys, names...)
}

// deleteKeys deletes the Redis keys that names make of keys, one DEL per
// limiter key (its keys share a slot), pipelined.
func deleteKeys(b *testing.B, admin rueidis.Client, keys []string, names ...func(string) string) {
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmds := make(rueidis.Commands, 0, len(keys))
	for _, k := range keys {
		del := make([]string, len(names))
		for i, name := range names {
			del[i] = name(k)
		}
		cmds = append(cmds, admin.B().Del().Key(del...).Build())
	}
	for _, r := range admin.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			b.Fatalf("deleting benchmark keys: %v", err)
		}
	}
}

// TestMemoryPerKey compares the Redis memory one busy key takes: 1,000
// requests within the window, Tollgate's sliding log (bounded: at most
// DefaultMaxLogEntries entries, plus its hash and the request ids the store
// gives each consume) against the seed (one member per unit). It asserts the
// sizes of the sets and, at cost 10, that Tollgate needs at most an eighth
// of the seed's memory: a design property (not a timing), stable for a
// given Redis version. At cost 1 the request ids take most of Tollgate's
// bytes, about as many as the seed's members, so it only logs that ratio.
func TestMemoryPerKey(t *testing.T) {
	const requests = 1000
	for _, tg := range targets() {
		for _, cost := range []int64{10, 1} {
			t.Run(fmt.Sprintf("%s/cost=%d", tg.name, cost), func(t *testing.T) {
				tgBytes, seedBytes := memoryPerKey(t, tg.opts, requests, cost)
				if cost == 10 && tgBytes*8 > seedBytes {
					t.Errorf("tollgate sliding log takes %d bytes, more than 1/8 of the seed's %d", tgBytes, seedBytes)
				}
			})
		}
	}
}

// memoryPerKey makes requests of cost on one key through Tollgate (each
// algorithm) and through the seed, each request a millisecond after the
// last so that the seed's members are all distinct, logs MEMORY USAGE of
// every resulting Redis key and returns the bytes of Tollgate's keys under
// the sliding log and of the seed's set.
func memoryPerKey(t *testing.T, opts redis.Options, requests int, cost int64) (tgBytes, seedBytes int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store := open(t, opts)
	client := newSeedClient(t, opts)
	sd := seed.Limiter{Client: client, Prefix: "seed:"}
	key := freshKeys()[0]
	base := time.Now()
	var now time.Time
	lim := tollgate.New(store, tollgate.Options{Now: func() time.Time { return now }})
	usage := func(keys ...string) int64 {
		t.Helper()
		var sum int64
		for _, k := range keys {
			n, err := client.Do(ctx, client.B().MemoryUsage().Key(k).Samples(0).Build()).AsInt64()
			if err != nil && !rueidis.IsRedisNil(err) {
				t.Fatalf("MEMORY USAGE %s: %v", k, err)
			}
			sum += n
		}
		return sum
	}
	card := func(k string) int64 {
		t.Helper()
		n, err := client.Do(ctx, client.B().Zcard().Key(k).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	sizes := map[tollgate.Algorithm]int64{}
	for _, a := range algorithms {
		limit := benchLimit(a)
		k := key + "/" + a.String()
		for i := range requests {
			now = base.Add(time.Duration(i) * time.Millisecond)
			if res, err := lim.Consume(ctx, k, cost, limit); err != nil || !res.Allowed {
				t.Fatalf("%s: request %d: %+v, %v", a, i, res, err)
			}
		}
		sizes[a] = usage(store.Keys(tollgate.StoreKey("", k), limit)...)
	}
	for i := range requests {
		ok, err := sd.Consume(ctx, key, cost, 1_000_000, time.Hour, base.Add(time.Duration(i)*time.Millisecond))
		if err != nil || !ok {
			t.Fatalf("seed: request %d: allowed %t, %v", i, ok, err)
		}
	}

	keys := store.Keys(tollgate.StoreKey("", key+"/"+tollgate.SlidingLog.String()), benchLimit(tollgate.SlidingLog))
	if n := card(keys[2]); n != tollgate.DefaultMaxLogEntries {
		t.Errorf("tollgate log holds %d entries, want %d (the bound)", n, tollgate.DefaultMaxLogEntries)
	}
	if n := card(sd.Key(key)); n != int64(requests)*cost {
		t.Errorf("seed set holds %d members, want %d (one per unit)", n, int64(requests)*cost)
	}
	tgBytes = sizes[tollgate.SlidingLog]
	seedBytes = usage(sd.Key(key))
	t.Logf("%d requests of cost %d on one key, MEMORY USAGE … SAMPLES 0:", requests, cost)
	t.Logf("  tollgate sliding_log: %d bytes (hash %d, ids %d, log %d), %.1f bytes/request",
		tgBytes, usage(keys[0]), usage(keys[1]), usage(keys[2]), float64(tgBytes)/float64(requests))
	t.Logf("  seed:                 %d bytes, %.1f bytes/request", seedBytes, float64(seedBytes)/float64(requests))
	t.Logf("  ratio tollgate/seed:  %.4f (1/%.1f)", float64(tgBytes)/float64(seedBytes), float64(seedBytes)/float64(tgBytes))
	t.Logf("  tollgate sliding_window: %d bytes; gcra: %d bytes (hash and ids)",
		sizes[tollgate.SlidingWindow], sizes[tollgate.GCRA])
	return tgBytes, seedBytes
}

// TestRedisBenchmarkCeiling measures, with redis-benchmark, how many
// sliding-log script runs per second the package's servers take from a C
// client on this machine, then Tollgate's BenchmarkConsume workload in the
// same process, for a same-run ratio. It is skipped unless
// TOLLGATE_BENCH_CEILING=1 (and redis-benchmark is installed):
//
//	TOLLGATE_BENCH_CEILING=1 go test -run TestRedisBenchmarkCeiling -v ./store/redis/
//
// redis-benchmark runs EVALSHA of scripts/check.lua (loaded on every node
// first) with one sliding-log limit on random keys, 50 connections, without
// and with pipelining. In cluster mode it routes by the "{tag}" it fills in
// per request; the keys of one call share that tag but get independent
// __rand_int__ numbers, which does the same Redis work as a real call.
func TestRedisBenchmarkCeiling(t *testing.T) {
	if os.Getenv("TOLLGATE_BENCH_CEILING") != "1" {
		t.Skip("set TOLLGATE_BENCH_CEILING=1 to measure the redis-benchmark ceiling")
	}
	bin, err := exec.LookPath("redis-benchmark")
	if err != nil {
		t.Skip("redis-benchmark is not installed:", err)
	}
	src := redis.Script()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	const requests = 200_000
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			nodes := nodesOf(tg.name)
			var sha string
			for _, n := range nodes {
				v, err := n.Do(ctx, "SCRIPT", "LOAD", src)
				if err != nil {
					t.Fatal(err)
				}
				sha, _ = v.(string)
			}
			run := strconv.FormatInt(time.Now().UnixNano(), 36)
			for _, pipeline := range []int{1, 16} {
				args := []string{"-h", nodes[0].Host, "-p", strconv.Itoa(nodes[0].Port), "-c", "50",
					"-n", strconv.Itoa(requests), "-r", strconv.Itoa(benchKeys), "-P", strconv.Itoa(pipeline), "--csv"}
				if tg.opts.Cluster {
					args = append(args, "--cluster")
				}
				args = append(args, "EVALSHA", sha, "3",
					"ceil"+run+":{tag}:__rand_int__:s", "ceil"+run+":{tag}:__rand_int__:d", "ceil"+run+":{tag}:__rand_int__:l3600000000",
					// ARGV as the store sends them; the id is random too.
					"0", "1", "", "__rand_int__", strconv.FormatInt(tollgate.DefaultDedupeWindow.Microseconds(), 10),
					strconv.Itoa(tollgate.DefaultMaxLogEntries), strconv.Itoa(tollgate.MaxDedupeIDs), "0", "1000000", "3600000000")
				cctx, ccancel := context.WithTimeout(ctx, 2*time.Minute)
				cpu0 := serverCPU(t, nodes)
				out, err := exec.CommandContext(cctx, bin, args...).Output()
				cpu := serverCPU(t, nodes) - cpu0
				ccancel()
				if err != nil {
					t.Fatalf("redis-benchmark %v: %v\n%s", args, err, out)
				}
				rps, p99, err := parseBenchmarkCSV(out)
				if err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				t.Logf("redis-benchmark -c 50 -P %d EVALSHA check.lua: %.0f requests/s, p99 %.0f µs, server CPU %.1f µs/request",
					pipeline, rps, p99*1000, cpu.Seconds()*1e6/requests)
			}

			store := open(t, tg.opts)
			admin := newSeedClient(t, tg.opts)
			lim := tollgate.New(store, tollgate.Options{})
			limit := benchLimit(tollgate.SlidingLog)
			res := testing.Benchmark(func(b *testing.B) {
				keys := freshKeys()
				defer deleteTollgateKeys(b, admin, store, keys)
				measure(b, nodes, keys, func(ctx context.Context, key string) (bool, error) {
					res, err := lim.Consume(ctx, key, 1, limit)
					return res.Allowed, err
				}, true)
			})
			t.Logf("tollgate Consume sliding_log, %d callers: %.0f checks/s, p99 %.0f µs, server CPU %.1f µs/check (%s)",
				benchCallers, res.Extra["checks/s"], res.Extra["p99-µs"], res.Extra["srv-cpu-µs/op"], res)
		})
	}
}

// parseBenchmarkCSV reads redis-benchmark --csv output: requests per second
// and p99 latency in milliseconds of its one test. In cluster mode a list of
// masters precedes the CSV header.
func parseBenchmarkCSV(out []byte) (rps, p99 float64, err error) {
	if i := bytes.Index(out, []byte(`"test",`)); i > 0 {
		out = out[i:]
	}
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil || len(recs) < 2 {
		return 0, 0, fmt.Errorf("redis-benchmark output: %d records, %v", len(recs), err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	ri, ok1 := col["rps"]
	pi, ok2 := col["p99_latency_ms"]
	last := recs[len(recs)-1]
	if !ok1 || !ok2 || max(ri, pi) >= len(last) {
		return 0, 0, fmt.Errorf("redis-benchmark output: columns %v", recs[0])
	}
	if rps, err = strconv.ParseFloat(last[ri], 64); err == nil {
		p99, err = strconv.ParseFloat(last[pi], 64)
	}
	return rps, p99, err
}
