package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/store/redis"
)

// A sliding log that is gone while its hash still holds a total (its TTL
// ran out first, as after a failover to a node whose clock is ahead) holds
// nothing: a refund then answers, and the key is empty, instead of the
// script failing on the missing newest entry.
func TestRefundAfterLogLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st := open(t, redis.Options{Addrs: []string{standalone.Addr}})
	lim := tollgate.New(st, tollgate.Options{})
	limit := tollgate.Limit{Units: 10, Window: time.Hour}
	key := t.Name() + time.Now().String()
	if _, err := lim.Consume(ctx, key, 4, limit); err != nil {
		t.Fatal(err)
	}
	keys := st.Keys(tollgate.StoreKey("", key), limit)
	log := keys[len(keys)-1]
	if n, err := standalone.Do(ctx, "DEL", log); err != nil || n.(int64) != 1 {
		t.Fatalf("DEL %s: %v %v", log, n, err)
	}
	if _, err := lim.Refund(ctx, key, 1, limit); err != nil {
		t.Fatalf("refund with the log gone: %v", err)
	}
	r, err := lim.Peek(ctx, key, limit)
	if err != nil || r.Used != 0 {
		t.Fatalf("after the refund: used %d, %v; want 0", r.Used, err)
	}
}
