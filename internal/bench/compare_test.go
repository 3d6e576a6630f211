package bench_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bench"
	"github.com/tollgate/tollgate/store/redis"
)

// A short comparison on a real Cluster has every row, each with its ratio to
// Tollgate, and leaves no key behind.
func TestCompareCluster(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	opts := redis.Options{Addrs: cluster.Addrs(), Cluster: true}
	store, err := redis.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	limit := tollgate.Limit{Units: 20, Window: time.Hour}
	// Each check draws its key at random: with 2,000 checks (40 a key on
	// average) some key got fewer than its 20 units' worth about one run in
	// 40, and the exact count below failed; with 4,000 (80 a key) that takes
	// 6.8 standard deviations.
	cmp := bench.Comparison{
		Config: bench.Config{Keys: 50, Count: 4000, Duration: 20 * time.Second, Concurrency: 16},
		Redis:  opts,
		Limit:  limit,
	}
	rows, err := cmp.Run(ctx, bench.Library{Limiter: tollgate.New(store, tollgate.Options{}), Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	report := bench.Report{Setup: bench.Setup{Target: "library", Store: "redis-cluster", Units: limit.Units, Window: limit.Window,
		Algorithm: limit.Algorithm.String(), Cost: "1", Keys: 50, Concurrency: 16, MaxChecks: 4000, MaxDuration: 20 * time.Second}, Rows: rows}
	t.Logf("\n%s", report)

	names := []string{bench.NameTollgate, bench.NameSeed, bench.NameRedisRate, bench.NameRedisBenchmark, bench.NameRedisBenchmarkP16}
	if len(rows) != len(names) {
		t.Fatalf("%d rows, want %d", len(rows), len(names))
	}
	_, noRedisBenchmark := exec.LookPath("redis-benchmark")
	for i, row := range rows {
		if row.Name != names[i] {
			t.Errorf("row %d is %q, want %q", i, row.Name, names[i])
		}
		if strings.HasPrefix(row.Name, bench.NameRedisBenchmark) && noRedisBenchmark != nil {
			if row.Skipped == "" {
				t.Errorf("redis-benchmark is not installed, yet its row has figures: %+v", row)
			}
			continue
		}
		if row.Skipped != "" || row.Ratio <= 0 || row.RatioP99 <= 0 || row.Checks == 0 {
			t.Errorf("row %s: skipped %q, ratio %v, p99 ratio %v, checks %d", row.Name, row.Skipped, row.Ratio, row.RatioP99, row.Checks)
		}
		if row.ServerCPU <= 0 || row.ClientCPU <= 0 {
			t.Errorf("row %s: cpu per check %v, Redis cpu per check %v; want both positive", row.Name, row.ClientCPU, row.ServerCPU)
		}
		if !row.External {
			if row.Errors != 0 {
				t.Errorf("row %s: errors %v", row.Name, row.ErrorSamples)
			}
			if row.Checks != 4000 {
				t.Errorf("row %s: %d checks, want 4000", row.Name, row.Checks)
			}
		}
	}
	// 50 keys of 20 units: Tollgate and GCRA allow exactly 1,000 (the hour
	// barely drains); the seed may overshoot under concurrency, never less.
	if rows[0].Allowed != 1000 {
		t.Errorf("tollgate allowed %d, want 1000", rows[0].Allowed)
	}
	if rows[1].Allowed < 1000 {
		t.Errorf("seed allowed %d, want at least 1000", rows[1].Allowed)
	}
	for _, row := range rows[3:] {
		if row.Checks != rows[0].Checks && row.Skipped == "" {
			t.Errorf("%s ran %d requests, want Tollgate's %d", row.Name, row.Checks, rows[0].Checks)
		}
	}

	// Every row reset or deleted its keys.
	checkEmpty(ctx, t)
}

// RedisCPU reads the CPU time of every node; a run with it has its Redis
// CPU per check.
func TestRedisCPU(t *testing.T) {
	needCluster(t)
	opts := redis.Options{Addrs: cluster.Addrs(), Cluster: true}
	cpu, closeCPU, err := bench.RedisCPU(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer closeCPU()
	if d, err := cpu(t.Context()); err != nil || d <= 0 {
		t.Fatalf("RedisCPU: %v, %v; want a positive time", d, err)
	}
	store, err := redis.New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	limit := tollgate.Limit{Units: 100, Window: time.Hour}
	row, err := bench.Run(t.Context(), "tollgate", bench.Library{Limiter: tollgate.New(store, tollgate.Options{}), Limit: limit},
		bench.Config{Keys: 10, Count: 500, Duration: 20 * time.Second, Concurrency: 4, ServerCPU: cpu})
	if err != nil {
		t.Fatal(err)
	}
	if row.ServerCPU <= 0 || row.ClientCPU <= 0 || row.Errors != 0 {
		t.Errorf("row %+v: want positive CPU per check, no errors", row)
	}
}

// checkEmpty fails t if any node of the cluster holds a key.
func checkEmpty(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, n := range cluster.Nodes() {
		// A replica applies its master's deletes a moment later: poll
		// briefly, bounded.
		var v any
		for range 20 {
			var err error
			if v, err = n.Do(ctx, "DBSIZE"); err != nil {
				t.Fatal(err)
			}
			if v == int64(0) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if v != int64(0) {
			some, _ := n.Do(ctx, "SCAN", "0", "COUNT", "5")
			t.Errorf("%s holds %v keys after the comparison, such as %v", n.Addr, v, some)
		}
	}
}
