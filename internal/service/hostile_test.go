package service

// The hostile-client suite: each case attacks a service on loopback,
// bounded in count and time, and asserts that it keeps serving well-formed
// requests, that memory stays bounded and that nothing changes where
// nothing should. Each logs what the server did and the peak heap it
// measured (runtime.MemStats.HeapAlloc, sampled while the attack runs).

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/server/metrics"
	"github.com/tollgate/tollgate/settings"
	"github.com/tollgate/tollgate/store/memory"
)

// heapPeak samples the heap every 20 ms until stop is called,
// which returns the highest HeapAlloc seen, in MiB.
func heapPeak() (stop func() float64) {
	var peak atomic.Uint64
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		for {
			p := peak.Load()
			if m.HeapAlloc <= p || peak.CompareAndSwap(p, m.HeapAlloc) {
				return
			}
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond) // ReadMemStats stops the world: not too often
		defer tick.Stop()
		for {
			sample()
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	return func() float64 {
		close(done)
		wg.Wait()
		sample()
		return float64(peak.Load()) / (1 << 20)
	}
}

// liveHeap is the heap in use after a collection, in MiB.
func liveHeap() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// 10^6 distinct keys of 512 bytes with a window of about 30 days (the
// attack that pinned memory for a month) on the memory store as serve wraps it: the key cap holds, the
// evictions are counted, and a key in use before the flood is still
// counted when the flood's keys are nearer their reset.
func TestHostileDistinctKeys(t *testing.T) {
	const (
		keys   = 1_000_000
		maxKey = 100_000
		budget = 30 * time.Second // under -race the loop may stop early; it logs how far it got
	)
	s := settings.Default()
	s.Memory.MaxKeys = maxKey
	m := metrics.New()
	st, _, closeStore, err := openStore(context.Background(), s, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	mem := st.(*memory.Store)
	lim := tollgate.New(WrapStore(st, s, m), tollgate.Options{})
	ctx := context.Background()
	base := liveHeap()

	// A key of a long window, in use before the flood.
	month := tollgate.Limit{Units: 10, Window: tollgate.MaxWindow}
	if _, err := lim.Consume(ctx, "victim", 3, month); err != nil {
		t.Fatal(err)
	}
	stop := heapPeak()
	// An hour short of the victim's window, so its keys reset first (a
	// flood of the victim's own window would evict it first: its usage is
	// older, so nearer its reset).
	flood := tollgate.Limit{Units: 1_000_000, Window: tollgate.MaxWindow - time.Hour}
	pad := strings.Repeat("k", tollgate.DefaultMaxKeyLen-12) // 512-byte keys, the longest
	start := time.Now()
	sent := 0
	unavailable := 0 // past the check timeout on a busy machine: allowed, counted
	for ; sent < keys && time.Since(start) < budget; sent++ {
		_, err := lim.Consume(ctx, pad+fmt.Sprintf("%012d", sent), 1, flood)
		switch {
		case errors.Is(err, tollgate.ErrUnavailable):
			unavailable++
		case err != nil:
			t.Fatal(err)
		}
	}
	peak := stop()
	held := mem.Keys()
	res, err := lim.Peek(ctx, "victim", month)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("distinct keys: %d sent in %s (%d past the check timeout), %d held (cap %d), %s, victim used=%d; heap %.0f MiB before, peak %.0f MiB, live after %.0f MiB",
		sent, time.Since(start).Round(time.Millisecond), unavailable, held, maxKey, metricLine(t, m, "tollgate_memory_evictions_total"), res.Used, base, peak, liveHeap())
	if held > maxKey {
		t.Errorf("%d keys held, cap %d", held, maxKey)
	}
	if sent > maxKey && res.Used != 3 {
		t.Errorf("the older key of a longer window was evicted before the flood's: used %d, want 3", res.Used)
	}
	// About 680 bytes a key of 512 bytes (store/memory's measurement),
	// with room for the map's growth and the GC's lag.
	if limit := base + 3*float64(maxKey)*680/(1<<20) + 64; peak > limit {
		t.Errorf("peak heap %.0f MiB, want under %.0f MiB", peak, limit)
	}
	if r, err := lim.Consume(ctx, "well-formed", 1, tollgate.PerMinute(5)); err != nil || !r.Allowed {
		t.Errorf("a well-formed request after the flood: %+v, %v", r, err)
	}
}

// metricLine returns the line of the metric name (with its labels) that m
// serves, or "" if none.
func metricLine(t *testing.T, m *metrics.Metrics, name string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if strings.HasPrefix(line, name) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
