package memory

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
)

type evictions struct{ n atomic.Int64 }

func (e *evictions) Evicted(n int) { e.n.Add(int64(n)) }

// keysOnShard returns n keys with prefix that land on shard 0.
func keysOnShard(s *Store, prefix string, n int) []string {
	var keys []string
	for i := 0; len(keys) < n; i++ {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if s.shard(k) == &s.shards[0] {
			keys = append(keys, k)
		}
	}
	return keys
}

// At its cap a shard evicts the live keys nearest their reset first, counts
// them, and drops the empty ones for free.
func TestMaxKeysEvictsNearestReset(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	obs := &evictions{}
	s := New(Options{MaxKeys: 10 * shardCount, Observer: obs})
	defer s.Close()
	ctx := context.Background()
	consume := func(key string, at time.Time, l tollgate.Limit) {
		t.Helper()
		if _, err := s.Do(ctx, tollgate.Request{Op: tollgate.OpConsume, Key: key, Cost: 1, Limits: []tollgate.Limit{l}, Now: at, MaxLogEntries: tollgate.DefaultMaxLogEntries}); err != nil {
			t.Fatal(err)
		}
	}
	held := func(key string) bool {
		s.shards[0].mu.Lock()
		defer s.shards[0].mu.Unlock()
		return s.shards[0].keys[key] != nil
	}
	minute := keysOnShard(s, "minute", 6)
	hour := keysOnShard(s, "hour", 10)
	for i, k := range minute { // minute key i resets at t0+60s+i
		consume(k, t0.Add(time.Duration(i)*time.Second), tollgate.PerMinute(5))
	}
	at := t0.Add(10 * time.Second)
	for _, k := range hour[:4] {
		consume(k, at, tollgate.PerHour(5))
	}
	if n := len(s.shards[0].keys); n != 10 {
		t.Fatalf("%d keys on the shard, want 10", n)
	}
	// One more: the minute key nearest its reset goes.
	consume(hour[4], at, tollgate.PerHour(5))
	if held(minute[0]) || !held(minute[1]) || obs.n.Load() != 1 {
		t.Fatalf("after one eviction: minute[0] held %v, minute[1] %v, %d evicted", held(minute[0]), held(minute[1]), obs.n.Load())
	}
	// Five more: the other minute keys go, in order; no hour key.
	for _, k := range hour[5:] {
		consume(k, at, tollgate.PerHour(5))
	}
	for _, k := range minute {
		if held(k) {
			t.Errorf("minute key %s still held", k)
		}
	}
	for _, k := range hour {
		if !held(k) {
			t.Errorf("hour key %s evicted before the minute keys", k)
		}
	}
	if got := obs.n.Load(); got != 6 {
		t.Errorf("%d evictions counted, want 6", got)
	}
	// Once their usage is gone, keys are dropped without being counted.
	later := t0.Add(2 * time.Hour)
	consume("fresh", later, tollgate.PerHour(5))
	for _, k := range keysOnShard(s, "late", 3) {
		consume(k, later, tollgate.PerHour(5))
	}
	if got := obs.n.Load(); got != 6 {
		t.Errorf("%d evictions counted after dropping empty keys, want still 6", got)
	}
}

// TestMemoryPerKey measures the heap a key takes (one sliding-log limit,
// one entry), for DefaultMaxKeys' doc: run with -v to see the figures.
func TestMemoryPerKey(t *testing.T) {
	for _, keyLen := range []int{64, tollgate.DefaultMaxKeyLen} {
		const n = 100_000
		s := New(Options{MaxKeys: -1})
		pad := strings.Repeat("k", keyLen-8)
		before := heap()
		now := time.Now()
		for i := range n {
			k := fmt.Sprintf("%s%08d", pad, i) // allocated here: the map keeps it
			if _, err := s.Do(context.Background(), tollgate.Request{Op: tollgate.OpConsume, Key: k, Cost: 1, Limits: []tollgate.Limit{tollgate.PerHour(100)}, Now: now, MaxLogEntries: tollgate.DefaultMaxLogEntries}); err != nil {
				t.Fatal(err)
			}
		}
		after := heap()
		per := float64(after-before) / n
		t.Logf("key of %d bytes: %.0f bytes per key held (the key itself included); %d keys: %.0f MiB", keyLen, per, DefaultMaxKeys, per*DefaultMaxKeys/(1<<20))
		if per > 4096 {
			t.Errorf("%.0f bytes per key", per)
		}
		runtime.KeepAlive(s)
		_ = s.Close()
	}
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
