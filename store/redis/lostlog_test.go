package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/fakeclock"
	"github.com/tollgate/tollgate/store/redis"
)

// loseLog consumes 4 of a fresh key's 10 an hour, then deletes the key's
// sliding log and leaves its hash, which still counts the 4.
func loseLog(ctx context.Context, t *testing.T) (lim *tollgate.Limiter, key string, limit tollgate.Limit) {
	t.Helper()
	st := open(t, redis.Options{Addrs: []string{standalone.Addr}})
	lim = tollgate.New(st, tollgate.Options{})
	limit = tollgate.Limit{Units: 10, Window: time.Hour}
	key = t.Name() + time.Now().String()
	if _, err := lim.Consume(ctx, key, 4, limit); err != nil {
		t.Fatal(err)
	}
	keys := st.Keys(tollgate.StoreKey("", key), limit)
	if n, err := standalone.Do(ctx, "DEL", keys[len(keys)-1]); err != nil || n.(int64) != 1 {
		t.Fatalf("DEL the log: %v %v", n, err)
	}
	return lim, key, limit
}

// A sliding log that is gone while its hash still holds a total (its TTL
// ran out first, as after a failover to a node whose clock is ahead) holds
// nothing: a refund then answers, and the key is empty, instead of the
// script failing on the missing newest entry.
func TestRefundAfterLogLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	lim, key, limit := loseLog(ctx, t)
	if _, err := lim.Refund(ctx, key, 1, limit); err != nil {
		t.Fatalf("refund with the log gone: %v", err)
	}
	r, err := lim.Peek(ctx, key, limit)
	if err != nil || r.Used != 0 {
		t.Fatalf("after the refund: used %d, %v; want 0", r.Used, err)
	}
}

// A sliding log that is gone while its hash still counts it (evicted under
// maxmemory, which picks keys one by one, or expired for a caller whose
// clock is behind the writer's by more than the TTL's headroom) counts
// only what it holds once its total would deny: the lost units must not be
// counted for good, which would deny the key part of its limit for as
// long as it stays busy, each deny advising a wait of 1 µs.
func TestLogLostWhileCounted(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	lim, key, limit := loseLog(ctx, t)
	if r, err := lim.Consume(ctx, key, 10, limit); err != nil || !r.Allowed || r.Used != 10 {
		t.Fatalf("consume 10 with the log gone: %+v, %v; want allowed, used 10", r, err)
	}
	r, err := lim.Consume(ctx, key, 1, limit)
	if err != nil || r.Allowed || r.Used != 10 || r.RetryAfter < 59*time.Minute {
		t.Fatalf("consume 1 more: %+v, %v; want denied, used 10, retry after about an hour", r, err)
	}
}

// A caller whose clock is behind the last writer's still finds the state
// the writer left, though that writer's clock gave it only microseconds
// to live: a TTL that must grow gets headroom of an eighth of the longest
// window, at most a second, whatever the life it was asked for. Here a
// refund re-creates the log (it pops its only entry and puts the rest
// back) a microsecond before its entry leaves the window; a caller 12 ms
// behind, 50 ms later, must still be denied until the entry leaves.
func TestClockBehindFindsState(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st := open(t, redis.Options{Addrs: []string{standalone.Addr}})
	start := time.Now().Truncate(time.Second)
	clk := fakeclock.New(start)
	lim := tollgate.New(st, tollgate.Options{Now: clk.Now})
	limit := tollgate.Limit{Units: 3, Window: 10 * time.Minute}
	key := t.Name() + time.Now().String()
	if r, err := lim.Consume(ctx, key, 3, limit); err != nil || !r.Allowed {
		t.Fatalf("consume 3: %+v, %v", r, err)
	}
	clk.Set(start.Add(limit.Window - time.Microsecond))
	if _, err := lim.Refund(ctx, key, 2, limit); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	clk.Set(start.Add(limit.Window - 12*time.Millisecond))
	r, err := lim.Consume(ctx, key, 3, limit)
	if err != nil || r.Allowed || r.Used != 1 || r.RetryAfter != 12*time.Millisecond {
		t.Fatalf("consume 3, 12 ms behind: %+v, %v; want denied, used 1, retry after 12ms", r, err)
	}
}
