package bench_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bench"
	"github.com/tollgate/tollgate/store/redis"
)

func TestScheduled(t *testing.T) {
	start := time.Unix(1_000, 0)
	third := float64(time.Second) / 3 // 3 checks/s: not a whole number of ns
	for _, tc := range []struct {
		i    int64
		want time.Duration
	}{{0, 0}, {1, 333_333_333}, {2, 666_666_667}, {3, time.Second}, {3_000_000, 1_000_000 * time.Second}} {
		if got := bench.Scheduled(start, third, tc.i).Sub(start); got != tc.want {
			t.Errorf("check %d due at +%v, want +%v (no drift)", tc.i, got, tc.want)
		}
	}
}

func TestOpenLoopStopsAtCount(t *testing.T) {
	var calls atomic.Int64
	target := funcTarget(func(context.Context, string, int64) (bool, error) {
		calls.Add(1)
		return true, nil
	})
	row, err := bench.Run(t.Context(), "t", target, bench.Config{Rate: 1_000_000, Count: 500, Duration: time.Minute, Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	checkSums(t, row)
	if row.Checks != 500 || calls.Load() != 500 {
		t.Errorf("checks %d, calls %d; want 500", row.Checks, calls.Load())
	}
	if row.StoppedBy != bench.StoppedByCount || row.OfferedPerSec != 1_000_000 {
		t.Errorf("stopped by %q, offered %v; want count, 1000000", row.StoppedBy, row.OfferedPerSec)
	}
}

// The schedule, not the time, bounds an open-loop run by duration: check i
// is sent only when it is due before the end, however fast the target.
func TestOpenLoopSendsOnlyWhatIsDue(t *testing.T) {
	var calls atomic.Int64
	target := funcTarget(func(context.Context, string, int64) (bool, error) {
		calls.Add(1)
		return true, nil
	})
	row, err := bench.Run(t.Context(), "t", target, bench.Config{Rate: 10, Duration: 250 * time.Millisecond, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	// Due at 0, 100 and 200 ms; one due later may be cut by the run's end
	// on a slow machine, never one more.
	if n := calls.Load(); n < 1 || n > 3 || row.Checks != n {
		t.Errorf("%d calls, %d checks; want 1 to 3 (3 due within 250ms at 10/s)", n, row.Checks)
	}
	if row.StoppedBy != bench.StoppedByDuration {
		t.Errorf("stopped by %q, want duration", row.StoppedBy)
	}
}

// A stall delays every check due during it, and each of them counts the
// wait: latency is from the scheduled start (no coordinated omission). The
// bound checked follows from the test's own stall, whatever the machine's
// speed.
func TestOpenLoopCountsTheWaitOfDelayedChecks(t *testing.T) {
	const stall = 50 * time.Millisecond
	release := make(chan struct{})
	var calls atomic.Int64
	target := funcTarget(func(ctx context.Context, _ string, _ int64) (bool, error) {
		if calls.Add(1) == 1 {
			<-release // the first check hangs until the test lets it go
		}
		return true, nil
	})
	go func() {
		time.Sleep(stall)
		close(release)
	}()
	// One in flight, 1,000/s: checks 1 to 9 are due at 1 to 9 ms, while the
	// first hangs for at least 50 ms, so each waits at least 41 ms.
	row, err := bench.Run(t.Context(), "t", target, bench.Config{Rate: 1000, Count: 10, Duration: time.Minute, Concurrency: 1, CheckTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if row.Checks != 10 {
		t.Fatalf("%d checks, want 10", row.Checks)
	}
	// Quantiles are bucket middles, within 0.4%.
	if floor := (stall - 9*time.Millisecond) * 99 / 100; row.P50 < floor {
		t.Errorf("p50 %v: the delayed checks' wait was not counted (each waited at least %v)", row.P50, stall-9*time.Millisecond)
	}
}

func TestRateOutOfRange(t *testing.T) {
	target := funcTarget(func(context.Context, string, int64) (bool, error) { return true, nil })
	for _, r := range []float64{-1, bench.MaxRate + 1} {
		if _, err := bench.Run(t.Context(), "t", target, bench.Config{Rate: r, Count: 1}); err == nil {
			t.Errorf("rate %v accepted", r)
		}
	}
}

// An open-loop comparison runs Tollgate, the floor and the seed at one rate
// on a real Cluster; redis-benchmark has no fixed rate and is skipped.
func TestCompareOpenLoopCluster(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	opts := redis.Options{Addrs: cluster.Addrs(), Cluster: true}
	store, err := redis.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	limit := tollgate.Limit{Units: 1000, Window: time.Hour}
	cmp := bench.Comparison{
		Config:  bench.Config{Keys: 50, Rate: 2000, Count: 400, Duration: 20 * time.Second, Concurrency: 16},
		Entries: []string{bench.GroupLatency, bench.EntryRedisBenchmark},
		Redis:   opts,
		Limit:   limit,
	}
	rows, err := cmp.Run(ctx, bench.Library{Limiter: tollgate.New(store, tollgate.Options{}), Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", bench.Report{Setup: bench.Setup{Target: "library", Cost: "1", Keys: 50, Concurrency: 16, Rate: 2000, MaxChecks: 400}, Rows: rows})
	names := []string{bench.NameTollgate, bench.NameFloor, bench.NameSeed, bench.NameRedisBenchmark, bench.NameRedisBenchmarkP16}
	if len(rows) != len(names) {
		t.Fatalf("%d rows, want %d", len(rows), len(names))
	}
	for i, row := range rows {
		if row.Name != names[i] {
			t.Errorf("row %d is %q, want %q", i, row.Name, names[i])
		}
		if i >= 3 {
			if row.Skipped == "" {
				t.Errorf("row %s ran at a fixed rate: %+v", row.Name, row)
			}
			continue
		}
		if row.Skipped != "" || row.Errors != 0 || row.Checks != 400 || row.Allowed != 400 || row.OfferedPerSec != 2000 || row.P50 <= 0 {
			t.Errorf("row %s: skipped %q, errors %v, checks %d, allowed %d, offered %v, p50 %v", row.Name, row.Skipped, row.ErrorSamples, row.Checks, row.Allowed, row.OfferedPerSec, row.P50)
		}
	}
	checkEmpty(ctx, t)
}
