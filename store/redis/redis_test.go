package redis_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/redis"
	"github.com/tollgate/tollgate/store/storetest"
)

// targets are the deployments every Redis test runs against.
func targets() []struct {
	name string
	opts redis.Options
} {
	return []struct {
		name string
		opts redis.Options
	}{
		{"Standalone", redis.Options{Addrs: []string{standalone.Addr}}},
		{"Cluster", redis.Options{Addrs: cluster.Addrs(), Cluster: true}},
		// Writes wait for a replica (WAIT on the script's connection).
		{"ClusterWaitReplica", redis.Options{Addrs: cluster.Addrs(), Cluster: true, WaitReplicas: 1, WaitTimeout: time.Second}},
	}
}

func open(t testing.TB, opts redis.Options) *redis.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := redis.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) func() tollgate.Store {
				// A prefix per backend, so that Inspect sees this test's keys.
				opts := tg.opts
				opts.Prefix = fmt.Sprintf("c%x:", rand.Uint64())
				return func() tollgate.Store { return open(t, opts) }
			}, storetest.Options{GeneratesIDs: true, Inspect: func(t testing.TB, s tollgate.Store) map[string]time.Duration {
				rs := s.(*redis.Store)
				prefix, _, _ := strings.Cut(rs.Key(""), "{")
				ttls := map[string]time.Duration{}
				for k, ms := range scanTTLs(t, masters(t, len(tg.opts.Addrs) > 1 || tg.opts.Cluster), prefix) {
					ttls[k] = time.Duration(ms) * time.Millisecond
				}
				return ttls
			}})
		})
	}
}

// The cluster's keys of one limiter key share a slot, whatever braces the
// key holds, and the hash tag is the escaped key itself.
func TestKeysShareOneSlot(t *testing.T) {
	s := open(t, redis.Options{Addrs: cluster.Addrs(), Cluster: true, Prefix: "p:"})
	for _, tc := range []struct{ key, want string }{
		{"cust-42", "p:{cust-42}:s"},
		{"a{b}c", "p:{a%7Bb%7Dc}:s"},
		{"}{", "p:{%7D%7B}:s"},
		{"100%", "p:{100%25}:s"},
	} {
		if got := s.Key(tc.key); got != tc.want {
			t.Errorf("Key(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
	limits := []tollgate.Limit{tollgate.PerSecond(1), tollgate.PerHour(1), {Units: 1, Window: time.Hour, Algorithm: tollgate.GCRA}}
	keys := s.Keys("a{b}", limits...)
	if len(keys) != 4 {
		t.Fatalf("Keys = %q, want the hash, the ids and two logs", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "p:{a%7Bb%7D}:") || redis.KeySlot(k) != redis.KeySlot(keys[0]) {
			t.Errorf("key %q is not in the slot of %q", k, keys[0])
		}
	}
}

// A consume writes keys that expire by themselves: the log one window after
// its newest entry, the hash as long as its longest-lived limit.
func TestKeysExpire(t *testing.T) {
	ctx := context.Background()
	s := open(t, redis.Options{Addrs: []string{standalone.Addr}})
	lim := tollgate.New(s, tollgate.Options{})
	key := t.Name() + time.Now().String()
	var limits []tollgate.Limit
	for _, a := range []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA} {
		limits = append(limits, tollgate.Limit{Units: 10, Window: 10 * time.Second, Algorithm: a})
	}
	if _, err := lim.ConsumeAll(ctx, key, 1, limits...); err != nil {
		t.Fatal(err)
	}
	for _, k := range s.Keys(tollgate.StoreKey("", key), limits...) {
		v, err := standalone.Do(ctx, "PTTL", k)
		if err != nil {
			t.Fatal(err)
		}
		// The longest: a sliding window's two buckets (20 s, rounded up
		// to the ms, plus 1), and the headroom a growing TTL gets: an
		// eighth, at most a second (check.lua's keep).
		ttl, _ := v.(int64)
		if ttl <= 0 || ttl > 20_001+1_000 {
			t.Errorf("%s: PTTL %v ms, want in (0, 21001]", k, v)
		}
	}
}

func TestNewErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := redis.New(ctx, redis.Options{}); err == nil {
		t.Error("no address: want an error")
	}
	if _, err := redis.New(ctx, redis.Options{Addrs: []string{standalone.Addr}, Prefix: "a{"}); err == nil {
		t.Error("brace in prefix: want an error")
	}
	if _, err := redis.New(ctx, redis.Options{Addrs: []string{"127.0.0.1:1"}}); err == nil {
		t.Error("nothing listening: want an error")
	}
}

// A store whose server went away fails with ErrUnavailable, and answers
// again once the server is back, with no help from the caller.
func TestUnavailable(t *testing.T) {
	ctx := context.Background()
	s := open(t, redis.Options{Addrs: []string{standalone.Addr}})
	lim := tollgate.New(s, tollgate.Options{})
	if err := standalone.Kill(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			standalone.Restart(context.Background())
		}
	})
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := lim.Consume(cctx, "k", 1, tollgate.PerSecond(5))
	cancel()
	if !errors.Is(err, tollgate.ErrUnavailable) {
		t.Fatalf("server down: got %v, want ErrUnavailable", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := standalone.Restart(rctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	for {
		_, err := lim.Consume(rctx, "k", 1, tollgate.PerSecond(5))
		if err == nil {
			break
		}
		if rctx.Err() != nil {
			t.Fatalf("no recovery after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
