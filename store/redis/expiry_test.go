package redis_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate"
	"github.com/tollgate/tollgate/internal/testcluster"
	"github.com/tollgate/tollgate/store/redis"
	"github.com/tollgate/tollgate/store/storetest"
)

// scanTTLs returns every key under prefix on nodes with its PTTL (ms; -1 for
// a key without a TTL).
func scanTTLs(t testing.TB, nodes []*testcluster.Node, prefix string) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	ttls := map[string]int64{}
	for _, n := range nodes {
		cursor := "0"
		for {
			v, err := n.Do(ctx, "SCAN", cursor, "MATCH", prefix+"*", "COUNT", 1000)
			if err != nil {
				t.Fatalf("SCAN on %s: %v", n.Addr, err)
			}
			reply := v.([]any)
			cursor = reply[0].(string)
			for _, k := range reply[1].([]any) {
				key := k.(string)
				p, err := n.Do(ctx, "PTTL", key)
				if err != nil {
					t.Fatalf("PTTL %s: %v", key, err)
				}
				if p.(int64) != -2 { // gone between SCAN and PTTL
					ttls[key] = p.(int64)
				}
			}
			if cursor == "0" {
				break
			}
		}
	}
	return ttls
}

// masters are the nodes that hold keys: every master of the Cluster, or the
// standalone server.
func masters(t testing.TB, clustered bool) []*testcluster.Node {
	t.Helper()
	if !clustered {
		return []*testcluster.Node{standalone.Node}
	}
	ms, err := cluster.Masters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// TestStateExpires follows keys across their windows on a real Redis: after
// every call each key the store wrote has a TTL; once the windows have
// passed with no traffic nothing is left; and a consume of the whole limit
// is then allowed with Used equal to its cost (no phantom usage). The
// sequences include the ones that used to leave keys without a TTL: a key
// used once, a refund that splits the newest entry, and a repeated request
// id allowed again past its dedupe window.
func TestStateExpires(t *testing.T) {
	const window = time.Second
	type call struct {
		op   tollgate.Op
		cost int64
		id   string
	}
	c := func(cost int64) call { return call{op: tollgate.OpConsume, cost: cost} }
	cid := func(cost int64, id string) call { return call{op: tollgate.OpConsume, cost: cost, id: id} }
	peek := call{op: tollgate.OpPeek, cost: 1}
	r := func(cost int64) call { return call{op: tollgate.OpRefund, cost: cost} }
	sequences := []struct {
		name  string
		units int64
		calls []call
	}{
		{"Once", 1, []call{c(1)}},
		{"RefundSplitsNewest", 10, []call{c(3), c(1), r(2)}},
		{"RefundAll", 10, []call{c(3), r(5), peek}},
		{"DenyThenPeek", 2, []call{c(2), c(1), peek}},
		{"IDAgainPastDedupe", 10, []call{cid(2, "x"), cid(2, "x"), r(1), cid(2, "x")}},
	}
	for _, clustered := range []bool{false, true} {
		name := "Standalone"
		opts := redis.Options{Addrs: []string{standalone.Addr}}
		if clustered {
			name = "Cluster"
			opts = redis.Options{Addrs: cluster.Addrs(), Cluster: true}
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			prefix := fmt.Sprintf("exp%x:", rand.Uint64())
			opts.Prefix = prefix
			s := open(t, opts)
			lim := tollgate.New(s, tollgate.Options{DedupeWindow: 100 * time.Millisecond})
			nodes := masters(t, clustered)
			algs := []tollgate.Algorithm{tollgate.SlidingLog, tollgate.SlidingWindow, tollgate.GCRA}
			var used []string
			for _, a := range algs {
				for _, seq := range sequences {
					key := a.String() + "/" + seq.name
					used = append(used, key)
					limit := tollgate.Limit{Units: seq.units, Window: window, Algorithm: a}
					for i, cl := range seq.calls {
						ctx := tollgate.WithRequestID(context.Background(), cl.id)
						if cl.id != "" && i > 0 {
							time.Sleep(150 * time.Millisecond) // past the dedupe window
						}
						if _, err := storetest.Apply(ctx, lim, cl.op, key, cl.cost, limit); err != nil {
							t.Fatalf("%s call %d: %v", key, i, err)
						}
						for k, ttl := range scanTTLs(t, nodes, prefix) {
							if ttl < 0 {
								t.Errorf("%s call %d (%s %d): key %s has no TTL", key, i, cl.op, cl.cost, k)
							}
						}
					}
				}
			}
			// The longest state is a sliding window's two buckets; TTLs are
			// rounded up to the millisecond.
			deadline := time.Now().Add(2*window + 500*time.Millisecond)
			for {
				left := scanTTLs(t, nodes, prefix)
				if len(left) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d keys left after the windows passed idle: %v", len(left), left)
				}
				time.Sleep(100 * time.Millisecond)
			}
			for _, a := range algs {
				for _, seq := range sequences {
					key := a.String() + "/" + seq.name
					res, err := lim.Consume(context.Background(), key, seq.units, tollgate.Limit{Units: seq.units, Window: window, Algorithm: a})
					if err != nil {
						t.Fatal(err)
					}
					if !res.Allowed || res.Used != seq.units {
						t.Errorf("%s after idle windows: %+v, want the whole limit allowed with used %d", key, res, seq.units)
					}
				}
			}
			if !strings.HasPrefix(s.Key("k"), prefix) {
				t.Fatalf("keys do not start with the prefix %q", prefix)
			}
		})
	}
}
