package bench_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bench"
	"github.com/tollgate/tollgate/store/memory"
)

// funcTarget adapts a function to a Target.
type funcTarget func(ctx context.Context, key string, cost int64) (bool, error)

func (f funcTarget) Check(ctx context.Context, key string, cost int64) (bool, error) {
	return f(ctx, key, cost)
}

func memoryLibrary(t *testing.T, limit tollgate.Limit) bench.Library {
	t.Helper()
	st := memory.New(memory.Options{})
	t.Cleanup(func() { st.Close() })
	return bench.Library{Limiter: tollgate.New(st, tollgate.Options{}), Limit: limit}
}

func checkSums(t *testing.T, row bench.Row) {
	t.Helper()
	if row.Allowed+row.Denied+row.Errors != row.Checks {
		t.Errorf("allowed %d + denied %d + errors %d != checks %d", row.Allowed, row.Denied, row.Errors, row.Checks)
	}
	var kinds int64
	for _, n := range row.ErrorKinds {
		kinds += n
	}
	if kinds != row.Errors {
		t.Errorf("errors by kind add up to %d, errors %d", kinds, row.Errors)
	}
}

func TestRunStopsAtCount(t *testing.T) {
	var calls atomic.Int64
	target := funcTarget(func(context.Context, string, int64) (bool, error) {
		calls.Add(1)
		return true, nil
	})
	row, err := bench.Run(t.Context(), "t", target, bench.Config{Count: 1000, Duration: time.Minute, Concurrency: 16})
	if err != nil {
		t.Fatal(err)
	}
	if row.Checks != 1000 || calls.Load() != 1000 || row.Allowed != 1000 {
		t.Errorf("checks %d, calls %d, allowed %d; want 1000 each", row.Checks, calls.Load(), row.Allowed)
	}
	if row.StoppedBy != bench.StoppedByCount {
		t.Errorf("stopped by %q, want count", row.StoppedBy)
	}
	if row.Elapsed > 10*time.Second {
		t.Errorf("elapsed %s", row.Elapsed)
	}
}

func TestRunStopsAtDuration(t *testing.T) {
	target := funcTarget(func(context.Context, string, int64) (bool, error) {
		time.Sleep(time.Millisecond)
		return true, nil
	})
	start := time.Now()
	row, err := bench.Run(t.Context(), "t", target, bench.Config{Count: 1 << 40, Duration: 200 * time.Millisecond, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 2*time.Second {
		t.Errorf("run took %s, want about 200ms", took)
	}
	if row.StoppedBy != bench.StoppedByDuration || row.Checks == 0 {
		t.Errorf("stopped by %q after %d checks", row.StoppedBy, row.Checks)
	}
	checkSums(t, row)
}

// A target that never answers holds a run no longer than its duration plus
// one check timeout, and every check counts as a timeout.
func TestRunBoundedByCheckTimeout(t *testing.T) {
	target := funcTarget(func(ctx context.Context, _ string, _ int64) (bool, error) {
		<-ctx.Done()
		return false, ctx.Err()
	})
	start := time.Now()
	row, err := bench.Run(t.Context(), "t", target, bench.Config{Duration: 100 * time.Millisecond, CheckTimeout: 50 * time.Millisecond, Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("run took %s", took)
	}
	if row.Errors == 0 || row.ErrorKinds["timeout"] != row.Errors || row.Allowed+row.Denied != 0 {
		t.Errorf("row %+v: want only timeouts", row)
	}
	if row.P50 != 0 {
		t.Errorf("p50 %s: errors must not count in latency", row.P50)
	}
	checkSums(t, row)
}

func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	row, err := bench.Run(ctx, "t", memoryLibrary(t, tollgate.PerHour(1_000_000)), bench.Config{Duration: time.Minute, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("run took %s after its context ended", took)
	}
	if row.StoppedBy != bench.StoppedByInterrupt || row.Checks == 0 {
		t.Errorf("stopped by %q after %d checks, want interrupt", row.StoppedBy, row.Checks)
	}
}

// Every check is counted once, as allowed, denied or an error of its kind.
func TestRunCountsOutcomes(t *testing.T) {
	errBoom := errors.New("boom")
	target := funcTarget(func(context.Context, string, int64) (bool, error) {
		switch rand.IntN(4) {
		case 0:
			return false, errBoom
		case 1:
			return false, context.DeadlineExceeded
		case 2:
			return false, nil
		}
		return true, nil
	})
	row, err := bench.Run(t.Context(), "t", target, bench.Config{Count: 5000, Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	if row.Checks != 5000 || row.Allowed == 0 || row.Denied == 0 || row.ErrorKinds["other"] == 0 || row.ErrorKinds["timeout"] == 0 {
		t.Errorf("row %+v", row)
	}
	if row.ErrorSamples["other"] != "boom" {
		t.Errorf("sample of other: %q", row.ErrorSamples["other"])
	}
	checkSums(t, row)
}

// With a limit of N units per hour on one key, exactly N units are allowed,
// whatever the concurrency.
func TestRunLibraryExactLimit(t *testing.T) {
	const n = 50
	for _, a := range []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA} {
		t.Run(a.String(), func(t *testing.T) {
			limit := tollgate.Limit{Units: n, Window: time.Hour, Algorithm: a}
			row, err := bench.Run(t.Context(), "t", memoryLibrary(t, limit), bench.Config{Keys: 1, Count: 10 * n, Concurrency: 16})
			if err != nil {
				t.Fatal(err)
			}
			if row.Allowed != n || row.Denied != 9*n || row.Errors != 0 {
				t.Errorf("allowed %d, denied %d, errors %d; want %d, %d, 0", row.Allowed, row.Denied, row.Errors, n, 9*n)
			}
		})
	}
}

// Costs above the limit are errors of their kind, and the library's keys are
// reset after the run.
func TestRunLibraryErrorsAndReset(t *testing.T) {
	lib := memoryLibrary(t, tollgate.PerHour(5))
	cost, err := bench.ParseCost("1:1,10:1")
	if err != nil {
		t.Fatal(err)
	}
	row, err := bench.Run(t.Context(), "t", lib, bench.Config{Keys: 3, KeyPrefix: "k", Count: 200, Cost: cost})
	if err != nil {
		t.Fatal(err)
	}
	if row.ErrorKinds["cost_exceeds_limit"] == 0 || row.Allowed != 15 {
		t.Errorf("row %+v: want cost_exceeds_limit errors and 15 allowed", row)
	}
	checkSums(t, row)
	for i := range 3 {
		res, err := lib.Limiter.Peek(t.Context(), "k"+string(rune('0'+i)), lib.Limit)
		if err != nil || res.Used != 0 {
			t.Errorf("key k%d after the run: used %d, %v; want reset", i, res.Used, err)
		}
	}
}

func TestConfigBounds(t *testing.T) {
	target := funcTarget(func(context.Context, string, int64) (bool, error) { return true, nil })
	for _, cfg := range []bench.Config{
		{Keys: -1}, {Concurrency: bench.MaxConcurrency + 1}, {Duration: -time.Second},
		{Duration: bench.MaxDuration + 1}, {Count: -1}, {CheckTimeout: -1},
	} {
		if _, err := bench.Run(t.Context(), "t", target, cfg); err == nil {
			t.Errorf("Run(%+v): no error", cfg)
		}
	}
}

func TestProgress(t *testing.T) {
	var calls, done int
	var last bench.Progress
	target := funcTarget(func(context.Context, string, int64) (bool, error) {
		time.Sleep(time.Millisecond)
		return true, nil
	})
	_, err := bench.Run(t.Context(), "p", target, bench.Config{Duration: 350 * time.Millisecond, Concurrency: 2, Progress: func(p bench.Progress) {
		calls++
		if p.Done {
			done++
		}
		last = p
	}})
	if err != nil {
		t.Fatal(err)
	}
	if calls < 3 || done != 1 || !last.Done || last.Name != "p" || last.Fraction < 0.99 || last.Checks == 0 {
		t.Errorf("%d calls, %d done, last %+v", calls, done, last)
	}
}
