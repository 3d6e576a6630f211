package redis_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/redis"
)

// TestHotKeyBounded sends many allowed requests to one key within one
// window and checks that its state stays bounded: at most
// DefaultMaxLogEntries log entries and MaxDedupeIDs request ids, under
// 1 MB in all, and the figures still exact (every unit counted). It then
// measures, with SLOWLOG at threshold 0, the Redis time of checks on the
// key at the bound: the coalescing consume, the denial that looks for its
// retry time, the peek and the refund. Timings are logged, never asserted.
//
// TOLLGATE_HOTKEY_REQUESTS sets the number of requests (default 5,000,
// past both bounds); BENCHMARKS.md's figures come from
//
//	TOLLGATE_HOTKEY_REQUESTS=100000 go test -run TestHotKeyBounded -v ./store/redis/
func TestHotKeyBounded(t *testing.T) {
	requests := 5000
	if v := os.Getenv("TOLLGATE_HOTKEY_REQUESTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			t.Fatalf("TOLLGATE_HOTKEY_REQUESTS=%q: want 1 to 10^6", v)
		}
		requests = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := open(t, redis.Options{Addrs: []string{standalone.Addr}})
	lim := tollgate.New(s, tollgate.Options{})
	key := fmt.Sprintf("hot-%d", time.Now().UnixNano())
	limit := tollgate.Limit{Units: int64(requests) + 10, Window: time.Hour}
	keys := s.Keys(tollgate.StoreKey("", key), limit)

	const callers = 16
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < requests; i += callers {
				res, err := lim.Consume(ctx, key, 1, limit)
				if err == nil && !res.Allowed {
					err = fmt.Errorf("request %d denied: %+v", i, res)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	num := func(args ...any) int64 {
		t.Helper()
		v, err := standalone.Do(ctx, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		n, _ := v.(int64)
		return n
	}
	entries, ids := num("ZCARD", keys[2]), num("ZCARD", keys[1])
	bytes := num("MEMORY", "USAGE", keys[0], "SAMPLES", "0") + num("MEMORY", "USAGE", keys[1], "SAMPLES", "0") + num("MEMORY", "USAGE", keys[2], "SAMPLES", "0")
	t.Logf("%d allowed requests in one window: %d log entries, %d request ids, %d bytes in all (hash, ids, log)", requests, entries, ids, bytes)
	if entries > tollgate.DefaultMaxLogEntries || ids > tollgate.MaxDedupeIDs {
		t.Errorf("%d entries, %d ids: want at most %d and %d", entries, ids, tollgate.DefaultMaxLogEntries, tollgate.MaxDedupeIDs)
	}
	if bytes >= 1<<20 {
		t.Errorf("the key holds %d bytes, want under 1 MB", bytes)
	}
	res, err := lim.Peek(ctx, key, limit)
	if err != nil || res.Used != int64(requests) {
		t.Fatalf("peek: %+v, %v; want used %d", res, err, requests)
	}

	// Redis time per check at the bound.
	if _, err := standalone.Do(ctx, "CONFIG", "SET", "slowlog-log-slower-than", "0", "slowlog-max-len", "1024"); err != nil {
		t.Fatal(err)
	}
	defer standalone.Do(context.Background(), "CONFIG", "SET", "slowlog-log-slower-than", "10000", "slowlog-max-len", "128")
	worst := func(name string, n int, call func() error) {
		t.Helper()
		if _, err := standalone.Do(ctx, "SLOWLOG", "RESET"); err != nil {
			t.Fatal(err)
		}
		for range n {
			if err := call(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		v, err := standalone.Do(ctx, "SLOWLOG", "GET", 1024)
		if err != nil {
			t.Fatal(err)
		}
		var most, sum, count int64
		for _, e := range v.([]any) {
			entry := e.([]any)
			args := entry[3].([]any)
			if len(args) == 0 || (args[0] != "evalsha" && args[0] != "EVALSHA" && args[0] != "eval" && args[0] != "EVAL") {
				continue
			}
			us := entry[2].(int64)
			most, sum, count = max(most, us), sum+us, count+1
		}
		if count > 0 {
			t.Logf("  %-34s %4d scripts: worst %4d µs, mean %6.1f µs of Redis time", name, count, most, float64(sum)/float64(count))
		}
	}
	t.Logf("Redis time of one check on the key at the bound (%d entries):", entries)
	worst("consume (coalescing)", 100, func() error { _, err := lim.Consume(ctx, key, 1, limit); return err })
	full := tollgate.Limit{Units: int64(requests) + 100, Window: time.Hour}
	worst("consume denied (retry time)", 100, func() error {
		_, err := lim.Consume(ctx, key, full.Units, full)
		return err
	})
	worst("peek", 100, func() error { _, err := lim.Peek(ctx, key, limit); return err })
	worst("refund of 1", 100, func() error { _, err := lim.Refund(ctx, key, 1, limit); return err })
	worst("refund of 1,000 (many entries)", 5, func() error { _, err := lim.Refund(ctx, key, 1000, limit); return err })
}
