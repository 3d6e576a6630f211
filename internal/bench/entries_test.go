package bench_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/bench"
	"github.com/tollgate/tollgate/server/httpapi"
	"github.com/tollgate/tollgate/store/memory"
	"github.com/tollgate/tollgate/store/overlimit"
	"github.com/tollgate/tollgate/store/redis"
)

func TestParseEntries(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		want    []string
		wantErr string
	}{
		{nil, nil, ""},
		{[]string{"baselines"}, []string{"seed", "redis_rate", "redis-benchmark"}, ""},
		{[]string{"deny", "HTTP", " ", "http"}, []string{"http", "deny"}, ""},
		{[]string{"redis-benchmark", "baselines"}, []string{"seed", "redis_rate", "redis-benchmark"}, ""},
		{[]string{"all"}, []string{"floor", "http", "seed", "redis_rate", "redis-benchmark", "deny"}, ""},
		{[]string{"latency"}, []string{"floor", "seed"}, ""},
		{[]string{"http", "grpc"}, nil, `unknown comparison "grpc"`},
	} {
		got, err := bench.ParseEntries(tc.in)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: %v, want an error with %q", tc.in, err, tc.wantErr)
			}
		case err != nil || !slices.Equal(got, tc.want):
			t.Errorf("%q: %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for e, want := range map[string]bool{"seed": true, "redis_rate": true, "redis-benchmark": true, "floor": true, "http": false, "deny": false} {
		if bench.NeedsRedis(e) != want {
			t.Errorf("NeedsRedis(%q) = %t", e, !want)
		}
	}
}

// denyLimiter returns Comparison.Deny for st: the Limiter on st, with the
// local over-limit cache when cached, as the service wraps its store.
func denyLimiter(st tollgate.Store) func(bool) *tollgate.Limiter {
	return func(cached bool) *tollgate.Limiter {
		if cached {
			return tollgate.New(overlimit.New(st, overlimit.Options{}), tollgate.Options{})
		}
		return tollgate.New(st, tollgate.Options{})
	}
}

// checkEntryRows checks the http and deny rows of a comparison: figures,
// every denial counted as one, ratios, and deny-cached's ratios to
// deny-store.
func checkEntryRows(t *testing.T, rows []bench.Row, checks int64) {
	t.Helper()
	names := []string{bench.NameTollgate, bench.NameHTTP, bench.NameDenyStore, bench.NameDenyCached}
	if len(rows) != len(names) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(names), rows)
	}
	for i, row := range rows {
		if row.Name != names[i] {
			t.Errorf("row %d is %q, want %q", i, row.Name, names[i])
		}
		if row.Skipped != "" || row.Checks != checks || row.Errors != 0 || row.ChecksPerSec <= 0 || row.Ratio <= 0 || row.RatioP99 <= 0 || row.P99 <= 0 {
			t.Errorf("row %s: %+v", row.Name, row)
		}
	}
	if rows[1].Allowed != checks {
		t.Errorf("http: allowed %d of %d (the limit lets every check through)", rows[1].Allowed, checks)
	}
	for _, row := range rows[2:] {
		if row.Denied != checks {
			t.Errorf("%s: denied %d of %d", row.Name, row.Denied, checks)
		}
		if !strings.Contains(row.Note, "every check denied") {
			t.Errorf("%s: note %q", row.Name, row.Note)
		}
	}
	if rows[3].Base != bench.NameDenyStore || rows[2].Base != "" {
		t.Errorf("bases %q, %q; want deny-cached's to be deny-store", rows[2].Base, rows[3].Base)
	}
	if want := rows[3].ChecksPerSec / rows[2].ChecksPerSec; rows[3].Ratio != want {
		t.Errorf("deny-cached ratio %v, want %v (to deny-store)", rows[3].Ratio, want)
	}
}

// memoryEntries returns a Comparison of the http and deny entries on a
// memory store, count checks a row, and Tollgate's Target on that store.
func memoryEntries(t *testing.T, count int64) (bench.Comparison, bench.Library) {
	st := memory.New(memory.Options{})
	t.Cleanup(func() { st.Close() })
	lim := tollgate.New(st, tollgate.Options{})
	limit := tollgate.Limit{Units: 1_000_000, Window: time.Hour}
	cmp := bench.Comparison{
		Config:  bench.Config{Keys: 20, Count: count, Duration: 20 * time.Second, Concurrency: 4},
		Entries: []string{"deny", "http"},
		Limit:   limit,
		HTTP:    httpEntry(lim, limit),
		Deny:    denyLimiter(st),
	}
	return cmp, bench.Library{Limiter: lim, Limit: limit}
}

// The http and deny entries on the memory store: the service's handler on
// loopback, and the over-limit cache over the store.
func TestCompareEntriesMemory(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmp, tg := memoryEntries(t, 500)
	rows, err := cmp.Run(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	checkEntryRows(t, rows, 500)

	// Without the functions the rows are skipped, with the reason.
	cmp.HTTP, cmp.Deny = nil, nil
	rows, err = cmp.Run(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows[1:] {
		if row.Skipped == "" || row.Ratio != 0 {
			t.Errorf("row %s without its function: %+v", row.Name, row)
		}
	}
}

// Rounds: the rows run in turn, each round a share of the count, and each
// row's rounds add up to one row; a bound out of range is an error.
func TestCompareRounds(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmp, tg := memoryEntries(t, 600)
	cmp.Rounds = 3
	var started []string
	cmp.Status = func(name string) { started = append(started, name) }
	rows, err := cmp.Run(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	checkEntryRows(t, rows, 600)
	round := []string{bench.NameTollgate, bench.NameHTTP, bench.NameDenyStore, bench.NameDenyCached}
	if want := slices.Concat(round, round, round); !slices.Equal(started, want) {
		t.Errorf("rows started %v, want %v", started, want)
	}
	for _, n := range []int{-1, bench.MaxRounds + 1} {
		cmp.Rounds = n
		if _, err := cmp.Run(ctx, tg); err == nil {
			t.Errorf("rounds %d: want an error", n)
		}
	}
}

// The deny entry on a real Cluster, with a variable cost: keys are filled
// to the largest cost, every check is denied, and nothing is left behind.
func TestCompareDenyCluster(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	opts := redis.Options{Addrs: cluster.Addrs(), Cluster: true}
	st, err := redis.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cost, err := bench.ParseCost("1-5")
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA} {
		limit := tollgate.Limit{Units: 1000, Window: time.Hour, Algorithm: alg}
		cmp := bench.Comparison{
			Config:  bench.Config{Keys: 30, Count: 600, Duration: 20 * time.Second, Concurrency: 8, Cost: cost},
			Entries: []string{"deny"},
			Redis:   opts,
			Limit:   limit,
			Deny:    denyLimiter(st),
		}
		rows, err := cmp.Run(ctx, bench.Library{Limiter: tollgate.New(st, tollgate.Options{}), Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 3 {
			t.Fatalf("%s: %d rows, want 3", alg, len(rows))
		}
		for _, row := range rows[1:] {
			if row.Skipped != "" || row.Denied != 600 || row.Errors != 0 || row.Ratio <= 0 || !strings.Contains(row.Note, "limit 5 per 1h") {
				t.Errorf("%s: row %+v", alg, row)
			}
		}
	}
	checkEmpty(ctx, t)
}

// With a window shorter than the run, filled keys are allowed again; the
// deny rows say so rather than claim every check was denied.
func TestCompareDenyShortWindow(t *testing.T) {
	st := memory.New(memory.Options{})
	defer st.Close()
	// The fill and its denial must fall within one window (1 s), and the run
	// outlast it.
	limit := tollgate.Limit{Units: 1_000, Window: time.Second, Algorithm: tollgate.GCRA}
	cmp := bench.Comparison{
		Config:  bench.Config{Keys: 2, Duration: 1300 * time.Millisecond, Concurrency: 2},
		Entries: []string{"deny"},
		Limit:   limit,
		Deny:    denyLimiter(st),
	}
	rows, err := cmp.Run(t.Context(), bench.Library{Limiter: tollgate.New(st, tollgate.Options{}), Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows[1:] {
		if row.Skipped != "" || row.Checks == 0 {
			t.Fatalf("row %+v", row)
		}
		if row.Allowed > 0 == strings.Contains(row.Note, "every check denied") {
			t.Errorf("%s: allowed %d, note %q", row.Name, row.Allowed, row.Note)
		}
	}
}

// httpEntry serves lim's HTTP API on loopback for a Comparison's http
// entries, each with its batch size.
func httpEntry(lim *tollgate.Limiter, limit tollgate.Limit) func(context.Context, int) (bench.Target, func() error, error) {
	return func(_ context.Context, batch int) (bench.Target, func() error, error) {
		srv := httptest.NewServer(httpapi.New(lim, httpapi.Options{}))
		h, err := bench.NewHTTP(srv.URL, limit, bench.HTTPOptions{Conns: 4, Batch: batch})
		if err != nil {
			srv.Close()
			return nil, nil, err
		}
		return h, func() error { h.Close(); srv.Close(); return nil }, nil
	}
}
