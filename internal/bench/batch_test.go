package bench_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bench"
	"github.com/tollgate/tollgate/server/httpapi"
)

// countingBatch is a BatchTarget that allows every check and remembers the
// size of each call.
type countingBatch struct {
	size  int
	mu    sync.Mutex
	calls []int
}

func (c *countingBatch) Check(context.Context, string, int64) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, 1)
	return true, nil
}

func (c *countingBatch) BatchSize() int { return c.size }

func (c *countingBatch) CheckBatch(_ context.Context, keys []string, _ []int64, allowed []bool, errs []error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, len(keys))
	for i := range keys {
		allowed[i], errs[i] = true, nil
	}
}

// Run counts every check of a batch, and Count bounds checks, not calls:
// the last calls carry what is left.
func TestRunBatchCounts(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  bench.Config
	}{
		{"closed loop", bench.Config{Count: 23, Concurrency: 3}},
		{"open loop", bench.Config{Count: 23, Concurrency: 3, Rate: 10_000, Duration: 20 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := &countingBatch{size: 5}
			row, err := bench.Run(t.Context(), "batch", target, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			total := 0
			for _, n := range target.calls {
				if n < 1 || n > 5 {
					t.Errorf("a call of %d checks", n)
				}
				total += n
			}
			if row.Checks != 23 || row.Allowed != 23 || total != 23 || row.StoppedBy != bench.StoppedByCount {
				t.Errorf("checks %d, allowed %d, in calls %v, stopped by %s; want 23 in calls of at most 5, by count",
					row.Checks, row.Allowed, target.calls, row.StoppedBy)
			}
			if len(target.calls) < 5 || !strings.Contains(row.Note, "5 checks per request") {
				t.Errorf("%d calls, note %q", len(target.calls), row.Note)
			}
		})
	}
	// A batch size of 1 is the plain Check.
	target := &countingBatch{size: 1}
	row, err := bench.Run(t.Context(), "one", target, bench.Config{Count: 7, Concurrency: 2})
	if err != nil || row.Checks != 7 || len(target.calls) != 7 || row.Note != "" {
		t.Errorf("batch size 1: %v, %d checks in %d calls, note %q", err, row.Checks, len(target.calls), row.Note)
	}
}

// The HTTP target with Batch against the real HTTP API: every check of a
// batch is counted with its own outcome, and a refused batch is an error
// of its kind for each of its checks.
func TestHTTPBatchTarget(t *testing.T) {
	srv := httptest.NewServer(httpapi.New(newLimiter(t), httpapi.Options{APITokens: []string{"tok"}, MaxBatchChecks: 8}))
	defer srv.Close()
	limit := tollgate.Limit{Units: 40, Window: time.Hour, Algorithm: tollgate.GCRA}
	run := func(opts bench.HTTPOptions, cfg bench.Config) bench.Row {
		t.Helper()
		h, err := bench.NewHTTP(srv.URL, limit, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		row, err := bench.Run(t.Context(), "http-batch", h, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return row
	}

	// 2 keys × 40 units / cost 2 = 40 allowed, in calls of 7 checks.
	row := run(bench.HTTPOptions{Token: "tok", Conns: 4, Batch: 7}, bench.Config{Keys: 2, Count: 200, Concurrency: 4, Cost: bench.FixedCost(2)})
	if row.Checks != 200 || row.Allowed != 40 || row.Denied != 160 || row.Errors != 0 {
		t.Errorf("checks %d: allowed %d, denied %d, errors %d %v; want 200: 40, 160, 0", row.Checks, row.Allowed, row.Denied, row.Errors, row.ErrorSamples)
	}

	// Limits: each check of a batch names them.
	limits := []tollgate.Limit{{Units: 5, Window: time.Hour}, {Units: 100, Window: 24 * time.Hour}}
	row = run(bench.HTTPOptions{Token: "tok", Batch: 3, Limits: limits}, bench.Config{Keys: 1, Count: 12, Concurrency: 1})
	if row.Allowed != 5 || row.Denied != 7 || row.Errors != 0 {
		t.Errorf("limits: allowed %d, denied %d, errors %v; want 5, 7, 0", row.Allowed, row.Denied, row.ErrorSamples)
	}

	for _, tc := range []struct {
		name string
		opts bench.HTTPOptions
		kind string
	}{
		{"no token", bench.HTTPOptions{Batch: 4}, "http_401_unauthorized"},
		{"over the service's bound", bench.HTTPOptions{Token: "tok", Batch: 9}, "http_400_too_many_checks"},
	} {
		row := run(tc.opts, bench.Config{Count: 18, Concurrency: 2})
		if row.Errors != 18 || row.ErrorKinds[tc.kind] != 18 {
			t.Errorf("%s: errors %v, want 18 of kind %s", tc.name, row.ErrorKinds, tc.kind)
		}
	}

	if _, err := bench.NewHTTP(srv.URL, limit, bench.HTTPOptions{Batch: -1}); err == nil {
		t.Error("a negative batch: no error")
	}
}

// A check of a batch that its own endpoint would fail is an error of its
// kind; the others are answered.
func TestHTTPBatchTargetPerCheckErrors(t *testing.T) {
	down := tollgate.New(downStore{}, tollgate.Options{})
	srv := httptest.NewServer(httpapi.New(down, httpapi.Options{}))
	defer srv.Close()
	h, err := bench.NewHTTP(srv.URL, tollgate.PerHour(10), bench.HTTPOptions{Batch: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	keys := []string{"a", "b"}
	allowed, errs := make([]bool, 2), make([]error, 2)
	h.CheckBatch(t.Context(), keys, []int64{1, 1}, allowed, errs)
	for i, err := range errs {
		if bench.Kind(err) != "http_503_unavailable" || allowed[i] {
			t.Errorf("check %d: %v, %v (kind %q), want http_503_unavailable", i, allowed[i], err, bench.Kind(err))
		}
	}
}

// downStore fails every call as unavailable.
type downStore struct{}

func (downStore) Do(context.Context, tollgate.Request) (tollgate.Decision, error) {
	return tollgate.Decision{}, fmt.Errorf("%w: connection refused", tollgate.ErrUnavailable)
}

func (downStore) Reset(context.Context, string) error { return nil }

// The http entry with HTTPBatches runs a row per batch size, each counting
// checks.
func TestCompareHTTPBatches(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	lim := newLimiter(t)
	limit := tollgate.Limit{Units: 1_000_000, Window: time.Hour}
	var batches []int
	cmp := bench.Comparison{
		Config:      bench.Config{Keys: 20, Count: 300, Duration: 20 * time.Second, Concurrency: 4},
		Entries:     []string{"http"},
		Limit:       limit,
		HTTPBatches: []int{3, 10},
		HTTP: func(ctx context.Context, batch int) (bench.Target, func() error, error) {
			batches = append(batches, batch)
			return httpEntry(lim, limit)(ctx, batch)
		},
	}
	rows, err := cmp.Run(ctx, bench.Library{Limiter: lim, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{bench.NameTollgate, bench.NameHTTP, "http-batch-3", "http-batch-10"}
	if len(rows) != len(names) || fmt.Sprint(batches) != "[1 3 10]" {
		t.Fatalf("rows %+v, batches %v", rows, batches)
	}
	for i, row := range rows {
		if row.Name != names[i] || row.Checks != 300 || row.Allowed != 300 || row.Ratio <= 0 {
			t.Errorf("row %d: %+v, want %s with 300 checks allowed", i, row, names[i])
		}
	}
}
